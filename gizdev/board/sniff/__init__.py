"""``gizdev sniff``: relay and decode the MCU ⇄ WiFi-module serial link, or replay a capture of it.

Modules: :mod:`~gizdev.board.sniff.capture` (the capture file format), :mod:`~gizdev.board.sniff.trace`
(bytes to trace events and their text/JSON forms), :mod:`~gizdev.board.sniff.relay` (the relay between two
ports), :mod:`~gizdev.board.sniff.sniffer` (the live observer and the replay).
"""

from gizdev.board.sniff.capture import CaptureError, Chunk, Direction, IdleMark, format_item, parse_line, read_capture
from gizdev.board.sniff.relay import DEFAULT_IDLE_S, Relay, RelayObserver, RelayStats
from gizdev.board.sniff.sniffer import TraceTap, replay
from gizdev.board.sniff.trace import TraceDecoder, TraceEvent, event_json, event_text

__all__ = [
    "DEFAULT_IDLE_S",
    "CaptureError",
    "Chunk",
    "Direction",
    "IdleMark",
    "Relay",
    "RelayObserver",
    "RelayStats",
    "TraceDecoder",
    "TraceEvent",
    "TraceTap",
    "event_json",
    "event_text",
    "format_item",
    "parse_line",
    "read_capture",
    "replay",
]
