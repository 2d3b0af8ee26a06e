"""Command-line interface: one module per subcommand, each a thin wrapper."""
