"""gizdev: open tooling for Gizwits-style IoT products."""

__version__ = "0.1.0"
