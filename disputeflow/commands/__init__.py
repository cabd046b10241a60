"""Subcommands of the `disputeflow` CLI: each module here registers its own with `cli.command`."""
