"""Per-job control: requeue finished jobs (by id or by state) and cancel jobs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated

import typer

from golfq.core.broker import Broker, JobState
from golfq.cli.console import CliError, JsonOption, QueueOption, emit_json, queue


# An RQ job id as RQ's registries show it: "<spec id>-<attempt>".
_ATTEMPT_ID = re.compile(r"^([a-z2-7]{16})-\d+$")


def require_jobs(broker: Broker, ids: Sequence[str]) -> list[str]:
    """The job ids named (an RQ job id names its job), or a one-line error and nothing changes."""
    resolved, missing = [], []
    for name in dict.fromkeys(ids):
        match = _ATTEMPT_ID.match(name)  # spec ids have no "-", so this never hides a job
        job_id = match.group(1) if match else name
        if broker.get(job_id) is None:
            missing.append(name)
        else:
            resolved.append(job_id)
    if missing:
        raise CliError(f"job(s) not found in {broker.url}: {', '.join(missing)}")
    return list(dict.fromkeys(resolved))


def _report(verb: str, changed: list[str], asked: Sequence[str], as_json: bool) -> None:
    unchanged = [i for i in dict.fromkeys(asked) if i not in set(changed)]
    if as_json:
        emit_json({verb: changed, "unchanged": unchanged})
        return
    for job_id in changed:
        print(f"{job_id}  {verb}")
    for job_id in unchanged:
        print(f"{job_id}  unchanged (not in a state that allows it)")
    if not changed and not unchanged:
        print(f"no job {verb}")


def requeue(
    ids: Annotated[list[str] | None, typer.Argument(metavar="[ID...]")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead job (infra/timeout retries spent).")] = False,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed job (the experiment failed).")] = False,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue finished jobs again with fresh retry budgets (IDs may be RQ job ids, <id>-<attempt>).

    Example: golfq ops requeue --dead
    """
    ids = ids or []
    states = [s for s, on in ((JobState.DEAD, dead), (JobState.FAILED, failed)) if on]
    if not ids and not states:
        raise CliError("requeue: give job IDs, --dead or --failed")
    with queue(queue_url) as broker:
        ids = require_jobs(broker, ids)
        changed = broker.requeue(ids, states)
    _report("requeued", changed, ids, as_json)


def cancel(
    ids: Annotated[list[str], typer.Argument(metavar="ID...")],
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel queued or running jobs (a running job's worker kills it). Example: golfq ops cancel ID1 ID2"""
    with queue(queue_url) as broker:
        ids = require_jobs(broker, ids)
        changed = broker.cancel(ids)
    _report("cancelled", changed, ids, as_json)
