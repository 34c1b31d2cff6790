"""Subcommands of the `slmshift` command line, one module each (see `slmshift.cli`)."""
