"""The ``neurall`` command-line interface (one module per subcommand)."""
