"""Board tools: the conformance checker, the serial sniffer and flashing."""
