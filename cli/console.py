"""What every golfq verb shares: the --queue/--json options, the queue, output and number formats.

With --json a verb writes only JSON to stdout (one document, or one per line);
people get rich tables, and plain lines when stdout is not a terminal. Problems are
raised as golfq.core.errors.GolfqError and printed by golfq.cli.main as one line.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer

from golfq.core.backends import open_broker
from golfq.core.broker import Broker
from golfq.core.errors import GolfqError
from golfq.core.result import Result
from golfq.core.settings import DEFAULT_QUEUE, settings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

QueueOption = Annotated[
    str | None,
    typer.Option("--queue", metavar="URL", show_default=False,
                 help="Queue URL: sqlite:///PATH, redis://HOST:PORT/DB or modal://APP "
                      f"(default: $GOLFQ_QUEUE, else {DEFAULT_QUEUE})"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Write only JSON to stdout (a document or JSON lines).")]
WorkDirOption = Annotated[
    Path | None,
    typer.Option("--work-dir", metavar="DIR", show_default=False,
                 help="Where local workers keep runs (default: $GOLFQ_WORK_DIR, else .golfq/runs)"),
]


def work_dir(option: Path | None) -> Path:
    return option if option is not None else settings().work_dir


@contextlib.contextmanager
def queue(url: str | None) -> Iterator[Broker]:
    """The queue a URL names (default: settings().queue), closed afterwards."""
    try:
        broker = open_broker(url)
    except ImportError as error:
        named = url or settings().queue
        raise GolfqError(f"queue URL {named!r}: its backend is not installed here ({error})") from None
    try:
        yield broker
    finally:
        with contextlib.suppress(Exception):
            broker.close()


# JSON output rounds by what a number is: timestamps and measured seconds to the millisecond, bytes to
# whole bytes (a mean over seeds is a float), scores and losses (and their differences) to 8 decimals,
# milliseconds to the microsecond, dollars to 6 decimals; any other float to 8 significant digits, which
# turns float noise such as -0.06666667000000004 into -0.06666667, or to the millisecond from 1e5 up, so
# no integer digit of a large number (a timestamp under another name) is lost. Stored records keep every digit.
_ROUNDING: list[tuple[re.Pattern[str], int | None]] = [
    (re.compile(r"_bytes$"), None),
    (re.compile(r"((^|_)(seconds|at|ts|since|now)|deadline)$"), 3),
    (re.compile(r"(bpb|loss|gain)(_std)?$"), 8),
    (re.compile(r"_ms$"), 3),
    (re.compile(r"^cost_usd$"), 6),
]
SIGNIFICANT_DIGITS = 8
# A spec is shown as written: it is the user's input, and what `ops replay` submits again from
# `events --json`, so a rounded float would give it another id.
VERBATIM = frozenset({"spec"})


def tidy_number(value: float, key: str = "") -> float:
    """One float as JSON output shows it (see _ROUNDING)."""
    if not math.isfinite(value):
        return value
    for pattern, digits in _ROUNDING:
        if pattern.search(key):
            return round(value) if digits is None else round(value, digits)
    return round(value, 3) if abs(value) >= 1e5 else float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def tidy_numbers(value: Any, key: str = "") -> Any:
    """A builtins tree with each float rounded by its key (tidy_number): every --json output and MCP reply."""
    if isinstance(value, dict):
        return {k: v if k in VERBATIM else tidy_numbers(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [tidy_numbers(v, key) for v in value]
    if isinstance(value, float):
        return tidy_number(value, key)
    return value


_encoder = msgspec.json.Encoder()


def emit_json(obj: Any) -> None:
    """One JSON document on one line of stdout (Structs, enums and dicts all encode), numbers tidied."""
    sys.stdout.write(_encoder.encode(tidy_numbers(msgspec.to_builtins(obj))).decode() + "\n")
    sys.stdout.flush()


def emit(as_json: bool, doc: Any, line: str) -> None:
    """A verb's outcome: the document with --json, else the line for people."""
    if as_json:
        emit_json(doc)
    else:
        print(line)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def console(stderr: bool = False) -> Console:
    """A rich console bound to the current stdout/stderr (tests swap them)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, soft_wrap=False, width=None if stream.isatty() else 160)


def print_table(title: str, table: Table) -> None:
    """The title as its own line: a rich table title is padded with spaces to the table's width."""
    out = console()
    out.print(title, markup=False)
    out.print(table)


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


def first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0]


def result_line(job_id: str, name: str, result: Result, state: str | None = None) -> str:
    """One finished attempt as worker, wait and demo print it; state is the job's end state when known."""
    if result.succeeded:
        return (f"{job_id}  succeeded  val_bpb={fmt_float(result.val_bpb)}  size={fmt_bytes(result.artifact_bytes)}"
                f"  train={fmt_seconds(result.train_seconds)}  {name}").rstrip()
    kind = f" ({result.failure.value})" if result.failure else ""
    return f"{job_id}  {state or result.status}{kind}  {first_line(result.error)}".rstrip()
