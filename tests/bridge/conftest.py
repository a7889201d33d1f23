"""Fixtures for the bridge tests that need the whole cloud (SQLite only: the bridge does not see the database)."""

from tests.bridge.bridge_fixtures import cloud_place_fixture  # noqa: F401
from tests.cloud.broker_fixtures import mosquitto_binary_fixture  # noqa: F401
