"""Board tools: conformance checks, sniffing and flashing of real boards."""
