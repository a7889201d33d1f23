"""Board tools: the firmware conformance checker, and (from other modules) the sniffer and flashing."""
