"""What every golfq verb shares: the --queue/--json options, output, and one-line errors.

With --json a verb writes only JSON to stdout (one document, or one per line);
people get rich tables, and plain lines when stdout is not a terminal. Errors are
raised as CliError and printed by the root command as one line on stderr.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec
import typer

from golfq.core.backends import DEFAULT_URL, open_broker
from golfq.core.broker import Broker, BrokerError

EXIT_OK, EXIT_JOB_FAILED, EXIT_BAD_INPUT = 0, 1, 2

QueueOption = Annotated[
    str | None,
    typer.Option("--queue", "-q", envvar="GOLFQ_QUEUE", show_envvar=True, metavar="URL",
                 help=f"Queue URL: sqlite:///PATH, redis://HOST:PORT/DB or modal://APP [default: {DEFAULT_URL}]"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Write only JSON to stdout (a document or JSON lines).")]


class CliError(Exception):
    """A one-line message for stderr and an exit code (2: bad input or usage)."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(" ".join(str(message).split()))
        self.code = code


@contextlib.contextmanager
def queue(url: str | None) -> Iterator[Broker]:
    """Open the queue a URL names, as a one-line CliError when it cannot be used."""
    try:
        broker = open_broker(url)
    except BrokerError as error:
        raise CliError(str(error)) from None
    except ImportError as error:
        raise CliError(f"queue URL {url!r}: its backend is not installed here ({error})") from None
    try:
        yield broker
    except BrokerError as error:
        raise CliError(str(error)) from None
    finally:
        with contextlib.suppress(Exception):
            broker.close()


_encoder = msgspec.json.Encoder()


def emit_json(obj: Any) -> None:
    """One JSON document on one line of stdout (msgspec Structs, enums and dicts all encode)."""
    sys.stdout.write(_encoder.encode(obj).decode() + "\n")
    sys.stdout.flush()


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def console(stderr: bool = False):
    """A rich console bound to the current stdout/stderr (tests swap them)."""
    from rich.console import Console

    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=False,
                   width=None if (sys.stderr if stderr else sys.stdout).isatty() else 160)


def note(message: str) -> None:
    """A human-only remark on stderr (never mixed into --json stdout)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def fmt_bytes(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f} MB"


def fmt_float(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def fmt_seconds(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f} s" if x < 600 else f"{x / 60:.1f} min"
