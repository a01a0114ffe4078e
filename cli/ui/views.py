"""The dashboard's documents besides the Runs table: fronts, curves, parallel coordinates, lineage, operations.

Each is built from the client API (`Client` and the Broker contract it wraps), so the dashboard
works on every backend; what is costly to build (the spend, which reads the whole event log) is
kept until the queue's sequence number moves.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from golfq.cli.jobs import job_log, remote_log
from golfq.cli.loop import compare_doc
from golfq.cli.ui.rows import JobIndex, Row, as_number
from golfq.core.budget import label
from golfq.core.errors import GolfqError
from golfq.core.job import JobState
from golfq.core.pareto import CONFIRM_SEEDS, MAX_ARTIFACT_BYTES, FrontPoint
from golfq.core.pools import track_time_limit
from golfq.ops.cost import cost_summary
from golfq.producer.client import Client

MAX_CURVES = 20
MAX_FRONT_POINTS = 1500
MAX_PARALLEL_LINES = 5000
LOG_BYTES = 200_000
RECORD_SECONDS = 600.0  # the 8xH100 track's training-time rule, drawn on every track's time panel


class NotFound(GolfqError):
    """A job, track or config the queue does not have (HTTP 404)."""


def _point_doc(point: FrontPoint, on_front: set[str], incumbent: str | None, index: JobIndex) -> dict[str, Any]:
    first = index.rows.get(point.job_ids[0]) if point.job_ids else None
    return {
        "config": point.config, "job_ids": list(point.job_ids), "seeds": point.seeds,
        "artifact_bytes": point.artifact_bytes, "train_seconds": point.train_seconds, "val_bpb": point.val_bpb,
        "val_bpb_std": point.val_bpb_std, "val_bpbs": list(point.val_bpbs), "feasible": point.feasible,
        "confirmed": point.confirmed, "on_front": point.config in on_front, "incumbent": point.config == incumbent,
        "tested_against": point.incumbent, "gain": point.gain, "p_value": point.p_value,
        "significant": point.significant, "name": first["name"] if first else "",
        "env": first["env"] if first else {},
    }


def _drawn(ranking: Sequence[FrontPoint], on_front: set[str]) -> list[FrontPoint]:
    """Every point on the front and the best MAX_FRONT_POINTS others: a chart of 100,000 dots shows nothing more."""
    others = [p for p in ranking if p.config not in on_front][:MAX_FRONT_POINTS]
    keep = on_front | {p.config for p in others}
    return [p for p in ranking if p.config in keep]


def fronts_doc(client: Client, index: JobIndex) -> dict[str, Any]:
    """Every track's configs (on the front or not) with their seed spread, tests and the track's limits."""
    index.refresh()
    tracks = []
    for track in client.tracks():
        front = client.broker.front(track)
        ranking = client.ranking(track)
        on_front = {p.config for p in front.points}
        incumbent = front.incumbent.config if front.incumbent else None
        tracks.append({
            "track": track, "groups": front.groups, "results": front.results, "incumbent": incumbent,
            "limits": {"artifact_bytes": MAX_ARTIFACT_BYTES, "train_seconds": track_time_limit(track) or RECORD_SECONDS,
                       "time_rule_applies": track_time_limit(track) is not None},
            "points": [_point_doc(p, on_front, incumbent, index) for p in _drawn(ranking, on_front)],
            "shown": min(len(ranking), MAX_FRONT_POINTS + len(on_front)),
        })
    return {"tracks": tracks, "confirm_seeds": CONFIRM_SEEDS}


def _curve_doc(client: Client, row: Row) -> dict[str, Any]:
    points = client.curve(row["id"])
    return {"id": row["id"], "name": row["name"], "state": row["state"], "attempt": row["attempt"],
            "stopped": row["state"] == JobState.STOPPED.value, "error": row["error"],
            "points": [{"at": p.at, "step": p.step, "train_seconds": p.train_seconds, "train_loss": p.train_loss,
                        "val_loss": p.val_loss, "val_bpb": p.val_bpb} for p in points]}


def curves_doc(client: Client, index: JobIndex, ids: Sequence[str]) -> dict[str, Any]:
    if not ids:
        raise GolfqError("curves: name at least one job (ids=ID,ID)")
    if len(ids) > MAX_CURVES:
        raise GolfqError(f"curves: at most {MAX_CURVES} jobs at once, got {len(ids)}")
    rows = [_row(index, client, job_id) for job_id in ids]
    return {"curves": [_curve_doc(client, row) for row in rows]}


def _row(index: JobIndex, client: Client, job_id: str) -> Row:
    row = index.get(job_id)
    if row is None:
        raise NotFound(f"job {job_id}: not found in {client.url}")
    return row


def running_ids(index: JobIndex, limit: int = 8) -> list[str]:
    index.refresh()
    leased = [r for r in index.rows.values() if r["state"] == JobState.LEASED.value]
    return [r["id"] for r in sorted(leased, key=lambda r: -r["updated_at"])[:limit]]


def parallel_doc(index: JobIndex, track: str) -> dict[str, Any]:
    """The succeeded jobs of a track as lines over the hyperparameters that vary among them, then val_bpb."""
    index.refresh()
    rows = [r for r in index.rows.values() if r["track"] == track and r["val_bpb"] is not None]
    if not rows and not any(r["track"] == track for r in index.rows.values()):
        raise NotFound(f"track {track!r}: no jobs on it")
    keys = sorted({k for r in rows for k in r["env"]})
    varying = [k for k in keys if len({r["env"].get(k) for r in rows}) > 1]
    axes = []
    for key in varying:
        values = [r["env"].get(key) for r in rows]
        numbers = [as_number(v) for v in values if v is not None]
        if numbers and all(n is not None for n in numbers):
            axes.append({"key": key, "kind": "number"})
        else:
            axes.append({"key": key, "kind": "category",
                         "values": sorted({v if v is not None else "(unset)" for v in values})})
    rows.sort(key=lambda r: r["val_bpb"])
    lines = [{"id": r["id"], "config": r["config"], "val_bpb": r["val_bpb"],
              "values": [r["env"].get(a["key"]) for a in axes]} for r in rows[:MAX_PARALLEL_LINES]]
    return {"track": track, "axes": axes, "lines": lines, "jobs": len(rows), "shown": len(lines)}


def job_doc(index: JobIndex, client: Client, job_id: str) -> dict[str, Any]:
    """One job with its lineage: its parent, its children and the other seeds of its config."""
    row = _row(index, client, job_id)
    job = client.get(job_id)
    parent = index.rows.get(row["parent"]) if row["parent"] else None
    return {"job": row, "spec": _spec_doc(job), "parent": parent, "children": index.children(job_id),
            "seeds": [r for r in index.of_config(row["config"]) if r["id"] != job_id]}


def _spec_doc(job: Any) -> dict[str, Any]:
    if job is None:
        return {}
    spec = job.spec
    return {"trainer": spec.trainer, "priority": spec.priority, "created_by": spec.created_by,
            "train_seconds": spec.budget.train_seconds, "hard_timeout": spec.budget.hard_timeout,
            "data": {"dataset": spec.data.dataset, "tokenizer": spec.data.tokenizer},
            "worker": job.worker_id, "failures": dict(job.failures)}


def log_doc(client: Client, work_dir: Path, job_id: str) -> dict[str, Any]:
    """The latest attempt's log: the file on this machine, else the backend's copy, else the stored tail."""
    job = client.get(job_id)
    if job is None:
        raise NotFound(f"job {job_id}: not found in {client.url}")
    path = job_log(job, work_dir)
    if path is not None:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - LOG_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
        return {"id": job_id, "source": str(path), "truncated": size > LOG_BYTES, "text": text}
    remote = remote_log(client.broker, job)
    if remote is not None:
        return {"id": job_id, "source": "backend", "truncated": len(remote) > LOG_BYTES, "text": remote[-LOG_BYTES:]}
    tail = job.result.log_tail if job.result is not None else ""
    return {"id": job_id, "source": "stored tail" if tail else "none", "truncated": bool(tail), "text": tail}


def compare_view(client: Client, index: JobIndex, a: str, b: str) -> dict[str, Any]:
    """`golfq compare --json`'s document, each side with the name of its first job."""
    if not a or not b:
        raise GolfqError("compare: give two configs, a=ID&b=ID (a job id or a config key each)")
    doc = compare_doc(client.compare(a, b))  # a ref with no results: GolfqError naming it
    for side in (doc["a"], doc["b"]):
        first = index.get(side["job_ids"][0]) if side["job_ids"] else None
        side["name"] = first["name"] if first else ""
    return doc


class Spend:
    """The spend by pool, from the whole event log: read again only when the log has grown."""

    def __init__(self) -> None:
        self.seq = -1
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def by_pool(self, client: Client, seq: int) -> list[dict[str, Any]]:
        with self.lock:
            if seq != self.seq:
                self.rows = [{"pool": r.key, "attempts": r.attempts, "gpu_seconds": r.gpu_seconds,
                              "cost_usd": r.cost_usd} for r in cost_summary(client.broker, "pool")]
                self.seq = seq
            return self.rows


def budget_doc(client: Client, index: JobIndex) -> dict[str, Any]:
    """The spend caps: each scope's cap, spent, committed and left dollars, each pool's first job a cap
    holds (as `golfq status` shows it) and how many queued jobs a cap holds in all (the index's marks)."""
    index.refresh()
    view = client.budget()
    return {"scopes": [{"scope": s.scope, "label": label(s.scope), "cap": s.cap, "spent": round(s.spent, 4),
                        "committed": round(s.committed, 4), "left": None if s.left is None else round(s.left, 4)}
                       for s in view.scopes],
            "waiting": [{"pool": w.pool, "job_id": w.job_id, "reason": w.reason} for w in view.waiting],
            "jobs_waiting": sum(1 for r in index.rows.values() if r["waiting"])}


def ops_doc(client: Client, spend: Spend, index: JobIndex) -> dict[str, Any]:
    stats = client.broker.stats()
    pools = []
    for name, counts in sorted(stats.pools.items()):
        pools.append({"pool": name, "queued": counts.queued, "leased": counts.leased, "succeeded": counts.succeeded,
                      "failed": counts.failed, "dead": counts.dead, "cancelled": counts.cancelled,
                      "stopped": counts.stopped, "draining": counts.draining,
                      "workers": client.broker.serving(name)})
    spent = spend.by_pool(client, stats.last_seq)
    return {"backend": stats.backend, "queue": client.url, "last_seq": stats.last_seq, "pools": pools,
            "spend": spent, "spend_usd": round(sum(r["cost_usd"] for r in spent), 4),
            "gpu_seconds": round(sum(r["gpu_seconds"] for r in spent), 3), "extra": dict(stats.extra),
            "budget": budget_doc(client, index)}
