"""The throwaway PostgreSQL of tests/cloud (``db_url``, ``postgres_server``) for the tools' multi-worker runs."""

from tests.cloud.conftest import db_url, postgres_server  # noqa: F401 - fixtures, found by name
