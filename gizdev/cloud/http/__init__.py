"""The local cloud's HTTP side: the device API GAgent uses (form-encoded) and the app-facing Open API (JSON)."""

from gizdev.cloud.http.app import make_app
from gizdev.cloud.http.context import CloudContext, HttpSettings

__all__ = ["CloudContext", "HttpSettings", "make_app"]
