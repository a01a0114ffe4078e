"""What every golfq verb shares: the --queue/--json options, the queue, output and number formats.

With --json a verb writes only JSON to stdout (one document, or one per line);
people get rich tables, and plain lines when stdout is not a terminal. Problems are
raised as golfq.core.errors.GolfqError and printed by golfq.cli.main as one line.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

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


def json_text(obj: Any) -> str:
    """One compact JSON document (Structs, enums and dicts all encode), numbers tidied: --json and MCP replies."""
    return _encoder.encode(tidy_numbers(msgspec.to_builtins(obj))).decode()


def emit_json(obj: Any) -> None:
    """One JSON document on one line of stdout."""
    sys.stdout.write(json_text(obj) + "\n")
    sys.stdout.flush()


def emit(as_json: bool, doc: Any, line: str) -> None:
    """A verb's outcome: the document with --json, else the line for people."""
    if as_json:
        emit_json(doc)
    else:
        print(line)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


# C0/C1 controls (ESC, NUL, newlines, DEL) and the bidirectional overrides that reorder what a line shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text: str | None) -> str:
    """User text (names, errors, tags, env) safe to print: each control character as its escape (\\x1b, \\n)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode(), text or "")


def console(stderr: bool = False) -> Console:
    """A rich console bound to the current stdout/stderr (tests swap them).

    Markup is off: every string golfq prints may hold user text, and `[/]` in a job's name is text, not a tag.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    sized = stream.isatty() or "COLUMNS" in os.environ  # rich reads COLUMNS; a pipe without it gets 160
    return Console(file=stream, highlight=False, markup=False, soft_wrap=False, width=None if sized else 160)


WideOption = Annotated[bool, typer.Option("--wide", help="Every column, however wide the terminal.")]
KEEP = 100  # a column kept at any width: ids and scores are never dropped or cut
FLEX_MIN = 12  # the narrowest a wrapping text column (a name, an error) gets before columns are dropped


class Col(NamedTuple):
    """A table column: `keep` ranks it (the lowest is dropped first when the table is too wide; KEEP never);
    a `flex` column (a name, an error) is shortened with an ellipsis to fit instead (whole with --wide)."""

    header: str
    keep: int = KEEP
    right: bool = False
    flex: bool = False


def fitted_table(cols: Sequence[Col], rows: Sequence[Sequence[str]], wide: bool = False) -> Table:
    """A table that fits the terminal without cutting an id or a score: the least-kept columns are dropped, a
    flex column is shortened; `wide` keeps every column whole (print_table then widens the console to fit)."""
    from rich import box
    from rich.table import Table

    natural = [max([len(c.header), *(len(row[i]) for row in rows)]) for i, c in enumerate(cols)]
    shown_cols = list(range(len(cols)))

    def needed(indices: list[int]) -> int:
        return sum(FLEX_MIN if cols[i].flex else natural[i] for i in indices) + 2 * (len(indices) - 1)

    width = console().width
    while not wide and needed(shown_cols) > width:
        droppable = [i for i in shown_cols if cols[i].keep < KEEP]
        if not droppable:
            break
        shown_cols.remove(min(droppable, key=lambda i: (cols[i].keep, -i)))
    flexible = [i for i in shown_cols if cols[i].flex]
    room = max(FLEX_MIN, (width - needed(shown_cols)) // max(len(flexible), 1) + FLEX_MIN)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))  # two spaces between columns
    for i in shown_cols:
        col = cols[i]
        table.add_column(col.header, justify="right" if col.right else "left", no_wrap=True, overflow="ellipsis",
                         min_width=None if col.flex else natural[i],
                         max_width=min(natural[i], room) if col.flex and not wide else None)
    for row in rows:
        table.add_row(*(row[i] for i in shown_cols))
    return table


_TRAILING = re.compile(r" +((?:\x1b\[[0-9;]*m)*)$")  # a padded cell's spaces, before any closing style codes


def print_table(title: str, table: Table, wide: bool = False) -> None:
    """The title as its own line (a rich table title is padded to the table's width); no line ends in spaces."""
    out = console()
    if wide:
        out.width = max(out.width, out.measure(table, options=out.options.update_width(1 << 16)).maximum)
    with out.capture() as captured:
        out.print(table)
    lines = [*textwrap.wrap(title, out.width, break_long_words=False, break_on_hyphens=False),
             *(_TRAILING.sub(r"\1", line) for line in captured.get().splitlines())]
    out.file.write("".join(line + "\n" for line in lines))
    out.file.flush()


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
    """The first line of user text (an error, a log), shown safely."""
    return shown((text or "").strip().split("\n", 1)[0])


def result_line(job_id: str, name: str, result: Result, state: str | None = None) -> str:
    """One finished attempt as worker, wait and demo print it; state is the job's end state when known."""
    if result.succeeded:
        return (f"{job_id}  succeeded  val_bpb={fmt_float(result.val_bpb)}  size={fmt_bytes(result.artifact_bytes)}"
                f"  train={fmt_seconds(result.train_seconds)}  {shown(name)}").rstrip()
    kind = f" ({result.failure.value})" if result.failure else ""
    return f"{job_id}  {state or result.status}{kind}  {first_line(result.error)}".rstrip()
