"""What an operator names: jobs (by spec id, or by RQ job id) and pools, refused in one line when unknown."""

from __future__ import annotations

import re
from collections.abc import Sequence

from golfq.core.broker import Broker
from golfq.core.pools import known_pools
from golfq.ops import OpsError

# An RQ job id as RQ's registries show it: "<spec id>-<attempt>".
_ATTEMPT_ID = re.compile(r"^([a-z2-7]{16})-\d+$")


def resolve_job_ids(broker: Broker, names: Sequence[str]) -> list[str]:
    """The job ids named, each once (an RQ job id names its job); OpsError naming every unknown one."""
    resolved, missing = [], []
    for name in dict.fromkeys(names):
        match = _ATTEMPT_ID.match(name)  # spec ids have no "-", so this never hides a job
        job_id = match.group(1) if match else name
        if broker.get(job_id) is None:
            missing.append(name)
        else:
            resolved.append(job_id)
    if missing:
        raise OpsError(f"job(s) not found in {broker.url}: {', '.join(missing)}")
    return list(dict.fromkeys(resolved))


def require_pool(broker: Broker, pool: str) -> str:
    """A pool this process knows or the queue has jobs in (a pool another shell's GOLFQ_POOLS added)."""
    if pool in known_pools() or pool in broker.stats().pools:
        return pool
    raise OpsError(f"pool {pool!r}: unknown (known: {', '.join(sorted(known_pools()))})")
