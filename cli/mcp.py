"""`golfq mcp`: golfq's verbs as MCP tools over stdio, on the official `mcp` SDK (FastMCP).

Add it to Claude Code with `claude mcp add golfq -- golfq mcp --queue URL`. Every tool
returns a JSON-able dict shaped like the matching verb's --json output; a problem is an
MCP tool error whose text is golfq's one-line message. Tools run in a worker thread, so a
blocking `wait_next` never stalls the session. Spec paths (`script = "train_gpt.py"`)
are read relative to the directory the server was started in.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer

from golfq.cli.console import QueueOption, WorkDirOption, json_text, queue, work_dir
from golfq.cli.jobs import job_row, log_text
from golfq.cli.loop import compare_doc, promoted_doc
from golfq.cli.pareto import as_ranking, front_doc
from golfq.core.broker import iter_events
from golfq.core.errors import GolfqError
from golfq.core.job import Job
from golfq.core.pools import known_pools
from golfq.core.settings import settings
from golfq.core.spec import ExperimentSpec
from golfq.ops.control import resolve_job_ids
from golfq.producer.client import Client
from golfq.producer.grid import Sweep, expand
from golfq.producer.loop import find_job
from golfq.producer.specfile import InputError, Prepared, prepare_all

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP

app = typer.Typer(add_completion=False)

MAX_WAIT_SECONDS = 3600.0
INSTRUCTIONS = """golfq queues training experiments (Parameter Golf: lowest val_bpb with an artifact of at
most 16,000,000 bytes, trained in 600 s on 8xH100). Explore on pool h100 (track 1xH100), promote the best
to h100x8 (track 8xH100), confirm over 3 seeds, compare against the incumbent under the record rule.
Submitting the same spec twice returns the existing job. Lower is better on every objective."""


def _job_doc(job: Job, new: bool | None = None) -> dict[str, Any]:
    doc = {**job_row(job), "seed": job.spec.seed, "parent": job.spec.parent}
    return doc if new is None else {**doc, "new": new}


def _submitted(pairs: list[tuple[Job, bool]]) -> dict[str, Any]:
    return {"jobs": [_job_doc(job, new) for job, new in pairs]}


def _spec_doc(spec: ExperimentSpec) -> dict[str, Any]:
    return {"id": spec.id, "spec": msgspec.to_builtins(spec)}


def _tool(fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn as an async tool that runs in a worker thread and returns its document as compact JSON text (the
    SDK would pretty-print it, and every space is a token the agent pays for)."""
    import anyio
    from mcp.types import TextContent

    @functools.wraps(fn)
    async def tool(**kwargs: Any) -> Any:
        out = await anyio.to_thread.run_sync(functools.partial(fn, **kwargs))
        return TextContent(type="text", text=json_text(out))

    # The SDK reads the parameters' types from the signature; older releases need them as types, not strings.
    tool.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    return tool


def _confined(path: Any, base_dir: Path) -> None:
    """A spec's script or code folder must lie under the server's --dir: an agent names files there, not
    anywhere on the machine."""
    if isinstance(path, str) and not (base_dir / path).resolve().is_relative_to(base_dir):
        raise InputError(f"{path}: outside the server's directory {base_dir} (start `golfq mcp --dir DIR` "
                         "to serve another)")


def _scripts_of(doc: Any) -> list[Any]:
    """Every script path and code folder a spec or sweep document names (top level, base, points)."""
    if not isinstance(doc, dict):
        return []
    points: list[Any] = doc["points"] if isinstance(doc.get("points"), list) else []
    return [d.get(key) for d in [doc, doc.get("base"), *points] if isinstance(d, dict) for key in ("script", "code")]


def build_server(client: Client, base_dir: Path, runs: Path | None = None) -> FastMCP:
    """A FastMCP server whose tools act on one queue through `client`; `runs`: local workers' run folders."""
    from mcp.server.fastmcp import FastMCP

    server = FastMCP("golfq", instructions=INSTRUCTIONS, log_level="WARNING")
    base_dir = base_dir.resolve()
    runs = runs if runs is not None else settings().work_dir

    def submit(spec: dict[str, Any], seeds: list[int] | None = None) -> dict[str, Any]:
        """Queue one experiment spec, one job per seed. Fields as in a spec file: pool (cpu, h100, h100x8),
        UPPER_CASE hyperparameters (or env), budget {train_seconds}, seed, parent, tags, name,
        promote {to, top, seeds}, script (a path on the server's machine) or code (a folder there, run in its
        own environment; entry names its script), data.make {command, inputs, paths}. Returns the jobs, with new=false
        for jobs that already existed (same spec, same id)."""
        for path in _scripts_of(spec):
            _confined(path, base_dir)
        docs = [{**spec, "seed": s} for s in seeds] if seeds else [spec]
        return _submitted(client.submit_prepared(prepare_all(docs, base=base_dir)))

    def sweep(sweep: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """Queue a sweep: {"base": spec, "grid": {KEY: [values]}, "points": [overrides], "seeds": [ints]}:
        one job per grid point (cartesian product, then points) and seed. dry_run lists the specs only."""
        for path in _scripts_of(sweep):
            _confined(path, base_dir)
        prepared: list[Prepared] = expand(Sweep.from_document(sweep, base_dir, where="sweep"))
        if dry_run:
            return {"specs": [_spec_doc(p.spec) for p in prepared]}
        return _submitted(client.submit_prepared(prepared))

    def status(ids: list[str] | None = None, state: str | None = None, pool: str | None = None,
               limit: int = 50) -> dict[str, Any]:
        """With ids: those jobs in full (spec, state, result). Without: per-pool counts, the last `limit`
        jobs, filtered by state (queued, leased, succeeded, failed, dead, cancelled, stopped) and pool,
        and `budget`: spend caps in dollars with spent and committed money, and `waiting`: the pools
        whose next job a cap keeps queued, with the reason (an operator raises the cap to release them)."""
        if ids:
            found = [client.get(i) for i in ids]
            missing = [i for i, job in zip(ids, found, strict=True) if job is None]
            if missing:
                raise GolfqError(f"job(s) not found in {client.url}: {', '.join(missing)}")
            return {"jobs": found}
        jobs = client.list(state, pool=pool)
        return {"stats": client.broker.stats(), "jobs": [job_row(j) for j in jobs[-limit:]] if limit > 0 else [],
                "budget": client.budget()}

    def wait_next(ids: list[str] | None = None, after: int | None = None,
                  timeout_seconds: float = 60.0) -> dict[str, Any]:
        """Block until the next of `ids` (or of any job, without ids) finishes, up to timeout_seconds
        (at most 3600). Returns {job, result, cursor, pending, timed_out, unserved}; pass cursor back as `after`
        (with the same ids) to get each later finish once, in order. Without `after`, ids already finished
        come back first, one per call. `unserved` lists pools where the jobs wait with no worker serving."""
        timeout = min(max(timeout_seconds, 0.0), MAX_WAIT_SECONDS)
        nxt = client.wait_next(ids or (), after=after, timeout=timeout)
        return {"job": _job_doc(nxt.job) if nxt.job else None, "result": nxt.result, "cursor": nxt.cursor,
                "pending": list(nxt.pending), "timed_out": nxt.timed_out,
                "unserved": [{"pool": pool, "jobs": jobs, "hint": _start_hint(pool)}
                             for pool, jobs in nxt.unserved.items()]}

    def _start_hint(pool: str) -> str:
        return f"no worker serves pool {pool}; start one: golfq worker --pool {pool} --queue {client.url}"

    def front(track: str | None = None, feasible_only: bool = False, ranking: bool = False) -> dict[str, Any]:
        """The Pareto front over (artifact bytes, train seconds, val_bpb) per track (8xH100, 1xH100, cpu, or a
        pool name; default all), best val_bpb first; ranking=true lists every config, on the front or not.
        Each point: mean and std over seeds, and its record-rule test against the track's incumbent
        (significant: true/false, null with one seed)."""
        tracks = client.tracks() if track is None else [client.resolve_track(track)]
        fronts = [client.broker.front(t) for t in tracks]
        if ranking:
            fronts = [as_ranking(f, client.broker.ranking(f.track)) for f in fronts]
        return {"feasible_only": feasible_only, "tracks": [front_doc(f, feasible_only) for f in fronts]}

    def curve(job_id: str, attempt: int | None = None) -> dict[str, Any]:
        """One attempt's live learning curve (default: the latest attempt): points of step, train_seconds,
        train_loss, val_loss, val_bpb as the run reports them."""
        job = find_job(client.broker, job_id)
        attempt = job.attempt if attempt is None else attempt
        return {"job_id": job_id, "attempt": attempt, "points": client.broker.curve(job_id, attempt)}

    def compare(a: str, b: str, level: float = 0.95) -> dict[str, Any]:
        """Welch's t-test of a's seeds against b's (each a job id or a config key): diff = mean(a) - mean(b)
        in val_bpb (negative: a is better), its CI, two-sided p, and the record rule (a beats b by
        0.005 nats in bpb at p < 0.01): significant true/false, or null with one seed on a side."""
        return compare_doc(client.compare(a, b, level=level))

    def promote(from_track: str, to: str, top: int = 3, seeds: int = 3, min_seeds: int = 1,
                dry_run: bool = False) -> dict[str, Any]:
        """Queue the best `top` feasible configs of one track or pool (by mean val_bpb) in pool `to` with
        `seeds` seeds each (1337, 42, 2025, ...), parent = each config's best job. Idempotent: jobs already
        queued are reported in `jobs` but not in `new`."""
        done = client.promote(from_track, to, top=top, seeds=seeds, min_seeds=min_seeds, dry_run=dry_run)
        return {"from": client.resolve_track(from_track), "to": to, "dry_run": dry_run,
                "promoted": [promoted_doc(p) for p in done]}

    def cancel(ids: list[str]) -> dict[str, Any]:
        """Cancel queued or running jobs; returns those that changed and those that were already over.
        An unknown id is an error and cancels nothing."""
        known = resolve_job_ids(client.broker, ids)
        done = client.cancel(known)
        return {"cancelled": done, "unchanged": [i for i in known if i not in done]}

    def requeue(ids: list[str]) -> dict[str, Any]:
        """Queue failed, dead, cancelled or stopped jobs again with fresh retry budgets (read `logs` first:
        a user failure fails again unless something changed). An unknown id is an error."""
        known = resolve_job_ids(client.broker, ids)
        done = client.broker.requeue(ids=known)
        return {"requeued": done, "unchanged": [i for i in known if i not in done]}

    def logs(job_id: str, tail_lines: int = 200) -> dict[str, Any]:
        """The last `tail_lines` lines (at most 5000) of a job's latest training log: the reason behind a
        failure, the trainer's own lines. `source` says where it was read."""
        job = find_job(client.broker, job_id)
        found = log_text(client.broker, job, runs)
        if found is None:
            raise GolfqError(f"job {job_id}: no log yet (state {job.state.value}, attempt {job.attempt})")
        text, source = found
        lines = text.splitlines()[-min(max(tail_lines, 1), 5000):]
        return {"job_id": job.id, "attempt": job.attempt, "state": job.state.value, "source": source,
                "lines": lines}

    def events(after: int = 0, limit: int = 100, job_id: str | None = None) -> dict[str, Any]:
        """The event log after sequence number `after`, oldest first, at most `limit` (1-1000): submitted,
        claimed, succeeded, failed, requeued, dead, cancelled, stopped... With job_id, that job's alone.
        Pass `cursor` back as `after` for the next page."""
        if after < 0 or not 1 <= limit <= 1000:
            raise GolfqError("events: after must be >= 0 and limit 1-1000")
        if job_id is not None:
            find_job(client.broker, job_id)
        found, cursor = [], after
        for event in iter_events(client.broker, after_seq=after, page=limit):
            cursor = event.seq
            if job_id is None or event.job_id == job_id:  # specs and log tails are left to status and logs
                doc = {k: v for k, v in msgspec.to_builtins(event).items() if k != "spec"}
                if isinstance(doc.get("result"), dict):
                    doc["result"].pop("log_tail", None)
                found.append(doc)
            if len(found) >= limit:
                break
        return {"events": found, "cursor": cursor}

    def workers() -> dict[str, Any]:
        """Per pool: queued and running jobs, draining, and how many workers serve it now (null where the
        backend cannot tell). Jobs queued where 0 workers serve wait until one starts."""
        stats = client.broker.stats()
        pools = []
        for name in sorted(set(stats.pools) | set(known_pools())):
            counts = stats.pools.get(name)
            serving = client.broker.serving(name)
            doc = {"pool": name, "serving": serving, "queued": counts.queued if counts else 0,
                   "leased": counts.leased if counts else 0, "draining": bool(counts and counts.draining)}
            if serving == 0 and doc["queued"]:
                doc["hint"] = _start_hint(name)
            pools.append(doc)
        return {"pools": pools}

    for fn in (submit, sweep, status, wait_next, front, curve, compare, promote, cancel, requeue, logs, events,
               workers):
        server.tool(structured_output=False)(_tool(fn))
    return server


@app.command()
def mcp(
    queue_url: QueueOption = None,
    base_dir: Annotated[Path | None, typer.Option("--dir", metavar="DIR",
                                                  help="Where spec paths are read from (default: here).")] = None,
    work_dir_option: WorkDirOption = None,
) -> None:
    """Serve golfq's verbs as MCP tools on stdio, for Claude Code and other agents.

    Tools: submit, sweep, status, wait_next, front, curve, compare, promote, cancel, requeue, logs, events,
    workers.

    Example: claude mcp add golfq -- golfq mcp --queue sqlite:///$PWD/.golfq/golfq.db
    """
    try:
        import mcp.server.fastmcp  # noqa: F401
    except ImportError:
        raise GolfqError("mcp needs the MCP SDK: pip install 'golfq[mcp]'") from None
    with queue(queue_url) as broker:
        build_server(Client(broker=broker), (base_dir or Path.cwd()).resolve(), work_dir(work_dir_option)).run("stdio")
