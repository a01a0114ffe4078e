"""The `golfq` command line: every verb, one error convention (see golfq.cli.main)."""

from golfq.cli.main import main

__all__ = ["main"]
