"""Command-line interface: thin subcommands that parse options, build config and call the library."""
