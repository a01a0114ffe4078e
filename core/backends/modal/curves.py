"""Live curves in the `APP-leases` Dict: each attempt's runner alone writes its keys, so no commit.

`curve/JOB/ATTEMPT` holds the point count and `curve/JOB/ATTEMPT/PAGE` 256 points each.
"""

from __future__ import annotations

from collections.abc import Sequence

from golfq.core.backends.modal.store import DictLike, decode, encode
from golfq.core.result import ProgressPoint

CURVE_PER_PAGE = 256


def append_points(store: DictLike, job_id: str, attempt: int, points: Sequence[ProgressPoint]) -> None:
    if not points:
        return
    count_key = f"curve/{job_id}/{attempt}"
    count = decode(store.get(count_key), int) or 0
    page = count // CURVE_PER_PAGE
    stored = decode(store.get(f"{count_key}/{page}"), list[ProgressPoint]) or []
    updates: dict[str, bytes] = {}
    for point in points:
        if len(stored) == CURVE_PER_PAGE:
            page, stored = page + 1, []
        stored.append(point)
        updates[f"{count_key}/{page}"] = encode(stored)
        count += 1
    updates[count_key] = encode(count)
    store.update(updates)


def read_points(store: DictLike, job_id: str, attempt: int) -> list[ProgressPoint]:
    count = decode(store.get(f"curve/{job_id}/{attempt}"), int) or 0
    out: list[ProgressPoint] = []
    for page in range((count + CURVE_PER_PAGE - 1) // CURVE_PER_PAGE):
        out += decode(store.get(f"curve/{job_id}/{attempt}/{page}"), list[ProgressPoint]) or []
    return out[:count]
