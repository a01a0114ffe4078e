"""The Runs table's rows: one flat dict per job, kept up to date from the event log, and its query language.

The dashboard pages, sorts and filters on the server, so a browser never holds more than a page
of a 100,000-job queue. The index reads only through the client API: `Client.list` once, then
`Client.events` after the last sequence number it saw and `Client.get` for each job those events
name; a queue with no new events costs one small read per refresh. Each refresh also reads the spend
caps (`Client.budget(waiting=False)`, one small read: a cap changes no job, so no event says so) and marks each
queued job a cap holds back: `waiting` "budget" and the line `golfq status` gives as its reason.
"""

from __future__ import annotations

import math
import operator
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from golfq.core.budget import BudgetView, hourly_usd, scopes_of, worst_case
from golfq.core.cost import attempt_cost, price_table
from golfq.core.errors import GolfqError
from golfq.core.job import Job, JobState
from golfq.core.pools import track_of
from golfq.core.spec import config_key
from golfq.producer.client import Client

Row = dict[str, Any]
Priced = dict[str, tuple[float, tuple[str, ...]]]  # queued job id -> (its worst case in $, its budget scopes)
# The fixed columns, in table order; each UPPER_CASE hyperparameter of any job is a column too.
COLUMNS = ("id", "state", "waiting", "pool", "name", "tags", "parent", "seed", "attempt", "val_bpb", "artifact_bytes",
           "train_seconds", "cost_usd", "submitted_at", "updated_at", "config", "track", "error")
NUMERIC = {"seed", "attempt", "val_bpb", "artifact_bytes", "train_seconds", "cost_usd", "submitted_at", "updated_at"}
ALIASES = {"bytes": "artifact_bytes", "seconds": "train_seconds", "cost": "cost_usd", "tag": "tags",
           "bpb": "val_bpb"}
SEARCHED = ("id", "name", "state", "pool", "error", "config")
_TERM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(>=|<=|!=|=|<|>|:)(.*)$")
RELOAD_AFTER = 2000  # more changed jobs than this since the last look: list them all again


class FilterError(GolfqError):
    """A filter the table cannot apply; its message names the term."""


def job_row(job: Job, prices: Mapping[str, float], tracks: dict[str, str]) -> Row:
    """A job as the table shows it; prices and the pool -> track map are read once per refresh by the caller."""
    r = job.result
    cost = attempt_cost(r, prices)[1] if r is not None else None
    if job.pool not in tracks:
        tracks[job.pool] = track_of(job.pool)
    row: Row = {
        "id": job.id, "state": job.state.value, "pool": job.pool, "name": job.spec.name, "tags": list(job.spec.tags),
        "parent": job.spec.parent or "", "seed": job.spec.seed, "attempt": job.attempt,
        "val_bpb": r.val_bpb if r is not None and r.succeeded else None,
        "artifact_bytes": r.artifact_bytes if r is not None else None,
        "train_seconds": r.train_seconds if r is not None else None,
        "cost_usd": cost, "submitted_at": job.submitted_at, "updated_at": job.updated_at,
        "config": config_key(job.spec), "track": tracks[job.pool], "error": job.error or "",
        "env": dict(job.spec.env), "waiting": "", "waiting_reason": "",
    }
    return row


def as_number(text: str) -> float | None:
    """A finite number from text, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _cell(row: Row, key: str) -> Any:
    return row["env"].get(key) if key[:1].isupper() else row.get(key)


Predicate = Callable[[Row], bool]


_OPS: dict[str, Callable[[Any, Any], Any]] = {":": operator.eq, "=": operator.eq, "!=": operator.ne,
                                              "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}


def _compare(op: str, left: Any, right: Any) -> bool:
    return bool(_OPS[op](left, right))


def _term(key: str, op: str, value: str, hyper: set[str]) -> Predicate:
    key = ALIASES.get(key, key)
    if key not in COLUMNS and key not in hyper:
        known = ", ".join([*COLUMNS, *sorted(hyper)][:30])
        raise FilterError(f"filter {key}{op}{value}: no column {key!r} (columns: {known})")
    if value == "":
        raise FilterError(f"filter {key}{op}: give a value after {op!r}")
    if key == "tags":
        if op not in (":", "=", "!="):
            raise FilterError(f"filter {key}{op}{value}: tags take :, = or !=")
        return (lambda r: value not in r["tags"]) if op == "!=" else (lambda r: value in r["tags"])
    if key in NUMERIC or op in ("<", ">", "<=", ">="):
        number = as_number(value)
        if number is None:
            raise FilterError(f"filter {key}{op}{value}: {value!r} is not a number")

        def numeric(row: Row) -> bool:
            cell = _cell(row, key)
            have = cell if isinstance(cell, (int, float)) else as_number(cell) if isinstance(cell, str) else None
            return have is not None and _compare(op, have, number)
        return numeric
    if op not in (":", "=", "!="):
        raise FilterError(f"filter {key}{op}{value}: text columns take :, = or !=")
    lowered = value.lower()
    if op == ":" and key in ("name", "error"):
        return lambda r: lowered in str(_cell(r, key) or "").lower()
    return lambda r: _compare("=" if op == ":" else op, str(_cell(r, key) or ""), value)


def parse_filter(text: str, hyper: set[str]) -> list[Predicate]:
    """`state:succeeded NUM_LAYERS>=8 val_bpb<2.5 tag:sweep words`: every term must hold.

    A term is COLUMN OP VALUE (OP one of : = != < > <= >=; `:` on name or error is a substring);
    any other word is searched for in id, name, state, pool, error and config key."""
    if len(text) > 2000:
        raise FilterError("filter: longer than 2,000 characters")
    predicates: list[Predicate] = []
    for word in text.split():
        match = _TERM.match(word)
        if match:
            predicates.append(_term(match[1], match[2], match[3], hyper))
            continue
        predicates.append(_search(word.lower()))
    return predicates


def _search(word: str) -> Predicate:
    return lambda r: any(word in str(r[k]).lower() for k in SEARCHED) or any(word in t.lower() for t in r["tags"])


def _sort_key(column: str) -> Callable[[Row], tuple]:
    def key(row: Row) -> tuple:
        cell = _cell(row, column)
        if cell is None or cell == "" or cell == []:
            return (2, 0.0, "")
        if isinstance(cell, (int, float)):
            return (0, float(cell), "")
        if isinstance(cell, str) and (number := as_number(cell)) is not None:
            return (0, number, "")
        return (1, 0.0, str(cell))
    return key


class JobIndex:
    """Every job of the queue as a row, refreshed from the event log at most every `every` seconds."""

    def __init__(self, client: Client, every: float = 0.5) -> None:
        self.client, self.every = client, every
        self.rows: dict[str, Row] = {}
        self.hyper: set[str] = set()
        self.seq = -1
        self.version = 0
        self.checked = 0.0
        self.lock = threading.Lock()
        self._query_cache: dict[tuple, list[Row]] = {}
        self.priced: Priced = {}  # the queued jobs a cap could hold back: those of a pool with a price
        self.budget = BudgetView(scopes=[])
        self.rates: dict[str, float] = {}  # pool -> $ an hour, read once per refresh that lists jobs

    def refresh(self) -> None:
        """Bring the rows up to date. Copy on write: a reader holding `rows` never sees it change under it."""
        with self.lock:
            if time.monotonic() - self.checked < self.every:
                return
            self.checked = time.monotonic()
            if self.seq < 0:
                self._reload()
                return
            changed: set[str] = set()
            seq = self.seq
            while True:
                events = self.client.events(after=seq, limit=1000)
                if not events:
                    break
                seq = max(seq, max(e.seq for e in events))
                changed.update(e.job_id for e in events if e.job_id)
                if len(changed) > RELOAD_AFTER:
                    self._reload()
                    return
            budget = self.client.budget(waiting=False)  # after the events: a raised cap shows with its claims
            if changed or budget != self.budget:
                rows, hyper, priced = dict(self.rows), set(self.hyper), dict(self.priced)
                prices: dict[str, float] = price_table()
                tracks: dict[str, str] = {}
                self.rates = {}
                jobs = []
                for job_id in changed:
                    job = self.client.get(job_id)
                    if job is None:  # purged
                        rows.pop(job_id, None)
                        priced.pop(job_id, None)
                    else:
                        jobs.append(job)
                for job in sorted(jobs, key=lambda j: (j.submitted_at, j.order)):  # rows stay in submission order
                    self._put(rows, hyper, priced, job, prices, tracks)
                self._publish(rows, hyper, priced, seq, budget)

    def _reload(self) -> None:
        seq = self.client.broker.stats().last_seq  # before the list, so nothing after it is missed
        rows: dict[str, Row] = {}
        hyper: set[str] = set()
        priced: Priced = {}
        prices: dict[str, float] = price_table()
        tracks: dict[str, str] = {}
        self.rates = {}
        for job in self.client.list():
            self._put(rows, hyper, priced, job, prices, tracks)
        self._publish(rows, hyper, priced, seq, self.client.budget(waiting=False))

    def _put(self, rows: dict[str, Row], hyper: set[str], priced: Priced, job: Job, prices: Mapping[str, float],
             tracks: dict[str, str]) -> None:
        row = job_row(job, prices, tracks)
        rows[job.id] = row
        hyper.update(row["env"])
        if job.pool not in self.rates:
            self.rates[job.pool] = hourly_usd(job.pool)
        if job.state is JobState.QUEUED and self.rates[job.pool]:
            priced[job.id] = (worst_case(job.spec, self.rates[job.pool]), scopes_of(job.spec))
        else:
            priced.pop(job.id, None)

    def _publish(self, rows: dict[str, Row], hyper: set[str], priced: Priced, seq: int, budget: BudgetView) -> None:
        for job_id, (worst, scopes) in priced.items():  # a new row, never a change to one a reader may hold
            reason = budget.holds_back(worst, scopes)
            if reason != rows[job_id]["waiting_reason"]:
                rows[job_id] = {**rows[job_id], "waiting": "budget" if reason else "", "waiting_reason": reason}
        self.rows, self.hyper, self.priced, self.seq, self.budget = rows, hyper, priced, seq, budget
        self.version += 1
        self._query_cache = {}

    def query(self, text: str = "", sort: str = "submitted_at", desc: bool = False) -> list[Row]:
        """The rows that pass the filter, sorted; cached until the queue changes."""
        self.refresh()
        column = ALIASES.get(sort, sort)
        if column not in COLUMNS and column not in self.hyper:
            raise FilterError(f"sort {sort!r}: no such column")
        key = (self.version, " ".join(text.split()), column, desc)
        if key not in self._query_cache:
            predicates = parse_filter(text, self.hyper)
            rows: Iterable[Row] = self.rows.values()  # a published dict: never changed after
            if predicates:
                rows = [r for r in rows if all(p(r) for p in predicates)]
            if column == "submitted_at":  # the rows are kept in submission order: no sort
                ordered = list(rows)
                if desc:
                    ordered.reverse()
            else:
                sort_key = _sort_key(column)
                keyed = [(sort_key(r), r) for r in rows]
                present = sorted((kr for kr in keyed if kr[0][0] < 2), key=lambda kr: kr[0], reverse=desc)
                ordered = [r for _, r in present] + [r for k, r in keyed if k[0] == 2]  # missing values last
            if len(self._query_cache) > 32:
                self._query_cache.clear()
            self._query_cache[key] = ordered
        return self._query_cache[key]

    def get(self, job_id: str) -> Row | None:
        self.refresh()
        return self.rows.get(job_id)

    def children(self, job_id: str) -> list[Row]:
        return [r for r in self.rows.values() if r["parent"] == job_id]

    def of_config(self, config: str) -> list[Row]:
        return [r for r in self.rows.values() if r["config"] == config]
