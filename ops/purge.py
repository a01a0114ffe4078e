"""Purge's cutoff: a date or an age, refused in one line when it is junk or in the future."""

from __future__ import annotations

import re
import time
from datetime import datetime

from golfq.ops import OpsError

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_before(text: str, now: float | None = None) -> float:
    """'2026-05-01', '2026-05-01T12:00:00+00:00' (local time without an offset), or an age: '7d', '12h'."""
    now = time.time() if now is None else now
    try:
        if m := _AGO.match(text.strip()):
            cutoff = now - float(m.group(1)) * _UNIT[m.group(2)]
        else:
            cutoff = datetime.fromisoformat(text.strip()).timestamp()
        datetime.fromtimestamp(cutoff)  # the summary prints it; an age past year 1 cannot be
    except (ValueError, OverflowError, OSError):
        raise OpsError(f"purge --before {text!r}: not a date (2026-05-01, 2026-05-01T12:00) "
                       "or an age (7d, 12h)") from None
    if cutoff > now:
        # Every finished job was last updated before a future date: almost surely a typo, and not undoable.
        raise OpsError(f"purge --before {text!r}: in the future; give a past date or an age such as 30d")
    return cutoff
