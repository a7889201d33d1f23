"""Pure codecs: P0 datapoints, serial frames, the command table and the MQTT/LAN envelope (no I/O, no asyncio)."""
