"""The `golfq` command line: every verb, one error convention (see golfq.cli.main)."""


def main(argv: list[str] | None = None) -> int:
    from golfq.cli.main import main as run

    return run(argv)
