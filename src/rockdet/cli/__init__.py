"""The `rockdet` command: one parser, one handler per subcommand."""
