"""`golfq ops purge --before DATE`: delete finished job records (events and fronts stay)."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated

import typer

from producer.console import CliError, JsonOption, QueueOption, emit_json, queue

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_before(text: str, now: float | None = None) -> float:
    """'2026-05-01', '2026-05-01T12:00:00+00:00' (local time without an offset), or an age: '7d', '12h'."""
    now = time.time() if now is None else now
    if m := _AGO.match(text.strip()):
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise CliError(f"purge --before {text!r}: not a date (2026-05-01, 2026-05-01T12:00) or an age (7d, 12h)") from None


def purge(
    before: Annotated[str, typer.Option(metavar="DATE", help="ISO date/time, or an age such as 7d or 12h.")],
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete finished jobs last updated before DATE. Example: golfq ops purge --before 30d"""
    cutoff = parse_before(before)
    with queue(queue_url) as broker:
        count = broker.purge(cutoff)
    stamp = datetime.fromtimestamp(cutoff).isoformat(timespec="seconds")
    if as_json:
        emit_json({"purged": count, "before": cutoff})
    else:
        print(f"purged {count} finished job(s) last updated before {stamp}")
