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

from golfq.cli.console import QueueOption, queue, tidy_numbers
from golfq.cli.jobs import job_row
from golfq.cli.loop import compare_doc, promoted_doc
from golfq.cli.pareto import as_ranking, front_doc
from golfq.core.errors import GolfqError
from golfq.core.job import Job
from golfq.core.spec import ExperimentSpec
from golfq.producer.client import Client
from golfq.producer.grid import Sweep, expand
from golfq.producer.loop import find_job
from golfq.producer.specfile import Prepared, prepare_all

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
    """fn as an async tool that runs in a worker thread and returns tidy JSON-able builtins."""
    import anyio

    @functools.wraps(fn)
    async def tool(**kwargs: Any) -> Any:
        out = await anyio.to_thread.run_sync(functools.partial(fn, **kwargs))
        return tidy_numbers(msgspec.to_builtins(out))

    # The SDK reads the parameters' types from the signature; older releases need them as types, not strings.
    tool.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    return tool


def build_server(client: Client, base_dir: Path) -> FastMCP:
    """A FastMCP server whose tools act on one queue through `client`."""
    from mcp.server.fastmcp import FastMCP

    server = FastMCP("golfq", instructions=INSTRUCTIONS, log_level="WARNING")

    def submit(spec: dict[str, Any], seeds: list[int] | None = None) -> dict[str, Any]:
        """Queue one experiment spec, one job per seed. Fields as in a spec file: pool (cpu, h100, h100x8),
        UPPER_CASE hyperparameters (or env), budget {train_seconds}, seed, parent, tags, name,
        promote {to, top, seeds}, script (a path on the server's machine) or code (a folder there, run in its
        own environment; entry names its script), data.make {command, inputs, paths}. Returns the jobs, with new=false
        for jobs that already existed (same spec, same id)."""
        docs = [{**spec, "seed": s} for s in seeds] if seeds else [spec]
        return _submitted(client.submit_prepared(prepare_all(docs, base=base_dir)))

    def sweep(sweep: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """Queue a sweep: {"base": spec, "grid": {KEY: [values]}, "points": [overrides], "seeds": [ints]}:
        one job per grid point (cartesian product, then points) and seed. dry_run lists the specs only."""
        prepared: list[Prepared] = expand(Sweep.from_document(sweep, base_dir, where="sweep"))
        if dry_run:
            return {"specs": [_spec_doc(p.spec) for p in prepared]}
        return _submitted(client.submit_prepared(prepared))

    def status(ids: list[str] | None = None, state: str | None = None, pool: str | None = None,
               limit: int = 50) -> dict[str, Any]:
        """With ids: those jobs in full (spec, state, result). Without: per-pool counts and the last `limit`
        jobs, filtered by state (queued, leased, succeeded, failed, dead, cancelled, stopped) and pool."""
        if ids:
            found = [client.get(i) for i in ids]
            missing = [i for i, job in zip(ids, found, strict=True) if job is None]
            if missing:
                raise GolfqError(f"job(s) not found in {client.url}: {', '.join(missing)}")
            return {"jobs": found}
        jobs = client.list(state, pool=pool)
        return {"stats": client.broker.stats(), "jobs": [job_row(j) for j in jobs[-limit:]] if limit > 0 else []}

    def wait_next(ids: list[str] | None = None, after: int | None = None,
                  timeout_seconds: float = 60.0) -> dict[str, Any]:
        """Block until the next of `ids` (or of any job, without ids) finishes, up to timeout_seconds
        (at most 3600). Returns {job, result, cursor, pending, timed_out}; pass cursor back as `after` to
        see every later result once. With ids, one already finished returns at once."""
        timeout = min(max(timeout_seconds, 0.0), MAX_WAIT_SECONDS)
        nxt = client.wait_next(ids or (), after=after, timeout=timeout)
        return {"job": _job_doc(nxt.job) if nxt.job else None, "result": nxt.result, "cursor": nxt.cursor,
                "pending": list(nxt.pending), "timed_out": nxt.timed_out}

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
        """Cancel queued or running jobs; returns the ids that changed."""
        return {"cancelled": client.cancel(ids)}

    for fn in (submit, sweep, status, wait_next, front, curve, compare, promote, cancel):
        server.tool()(_tool(fn))
    return server


@app.command()
def mcp(
    queue_url: QueueOption = None,
    base_dir: Annotated[Path | None, typer.Option("--dir", metavar="DIR",
                                                  help="Where spec paths are read from (default: here).")] = None,
) -> None:
    """Serve golfq's verbs as MCP tools on stdio, for Claude Code and other agents.

    Tools: submit, sweep, status, wait_next, front, curve, compare, promote, cancel.

    Example: claude mcp add golfq -- golfq mcp --queue sqlite:///$PWD/.golfq/golfq.db
    """
    try:
        import mcp.server.fastmcp  # noqa: F401
    except ImportError:
        raise GolfqError("mcp needs the MCP SDK: pip install 'golfq[mcp]'") from None
    with queue(queue_url) as broker:
        build_server(Client(broker=broker), (base_dir or Path.cwd()).resolve()).run("stdio")
