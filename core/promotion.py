"""Promotion: the best K configs of one track queued again in a bigger pool, with N seeds.

"Best" is by mean val_bpb among the track's feasible config groups, on the front or not:
the score is what agents rank by, and bytes and seconds are rules, not goals. A
promoted spec is the best job's spec with the target pool, the target track's budget,
fixed seeds and `parent` = that job; its id depends only on the config and the seed, so
promoting twice, or from two workers at once, queues nothing new (Broker.submit_new).
A spec's own `promote` rule runs after each of its counted successes (Broker.complete):
it promotes that spec's config if the config is in the top K of its track then.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from golfq.core.pareto import FrontPoint
from golfq.core.pools import Pool, get_pool, track_of
from golfq.core.spec import RUN_OVERHEAD_SECONDS, Budget, ExperimentSpec, SpecError, config_key, parse_spec

if TYPE_CHECKING:
    from golfq.core.broker import Broker

log = logging.getLogger("golfq.promotion")

# The challenge's default seed, then the two that records most often report beside it; then 0, 1, 2, ...
PROMOTION_SEEDS = (1337, 42, 2025)
PROMOTED_TAG = "promoted"


class Promoted(msgspec.Struct, frozen=True, kw_only=True):
    """One source config and the jobs its promotion names (new: those this call created)."""

    config: str
    rank: int  # 1 = the best feasible config of the source track
    val_bpb: float
    seeds: int  # seeds behind the source mean
    parent: str  # the source config's best job
    jobs: tuple[str, ...]
    new: tuple[str, ...]


def promotion_seeds(count: int) -> tuple[int, ...]:
    """`count` seeds, the same on every call, so a repeated promotion finds its jobs."""
    extra = [s for s in range(count + len(PROMOTION_SEEDS)) if s not in PROMOTION_SEEDS]
    return (PROMOTION_SEEDS + tuple(extra))[:count]


def select(ranking: Sequence[FrontPoint], top: int, min_seeds: int = 1) -> list[tuple[int, FrontPoint]]:
    """(rank, point) of the best `top` feasible groups with at least min_seeds seeds; rank counts from 1."""
    eligible = [p for p in ranking if p.feasible and p.seeds >= min_seeds]
    eligible.sort(key=lambda p: (p.val_bpb, p.config))
    return list(enumerate(eligible[:top], start=1))


def best_job(point: FrontPoint) -> str:
    """The job of the group's lowest val_bpb (ties: the smaller id)."""
    values = point.val_bpbs or (point.val_bpb,) * len(point.job_ids)
    return min(zip(values, point.job_ids, strict=True))[1]


def target_budget(source: Budget, source_track: str, target: Pool) -> Budget:
    """The source budget, unless the target track has a time rule it was not run under."""
    limit = target.time_limit_seconds
    if limit is None or target.track == source_track:
        return source
    timeout = limit + (target.eval_limit_seconds or limit) + RUN_OVERHEAD_SECONDS
    return Budget(train_seconds=limit, timeout_seconds=timeout, retries=source.retries)


def promoted_specs(spec: ExperimentSpec, parent: str, to: str, seeds: Sequence[int],
                   env: Mapping[str, str | None] | None = None,
                   created_by: str = "golfq promote") -> list[ExperimentSpec]:
    """One spec per seed: the parent's experiment in pool `to`; env entries set (None: remove) keys."""
    try:
        pool = get_pool(to)
    except KeyError as error:
        raise SpecError(f"promote --to: {error.args[0]}") from None
    new_env = {k: v for k, v in {**spec.env, **(env or {})}.items() if v is not None}
    tags = spec.tags if PROMOTED_TAG in spec.tags else (*spec.tags, PROMOTED_TAG)[-32:]
    doc = {**msgspec.to_builtins(spec), "pool": to, "env": new_env, "parent": parent, "tags": list(tags),
           "promote": None, "created_by": created_by,
           "budget": msgspec.to_builtins(target_budget(spec.budget, track_of(spec.pool), pool))}
    doc.pop("stop", None)  # an early stopping rule is for exploring; a promoted config has earned full runs
    return [parse_spec({**doc, "seed": seed}) for seed in seeds]  # parsed, so env overrides are checked as any spec's


def promote(broker: Broker, track: str, to: str, top: int = 3, seeds: int | Sequence[int] = 3, *,
            min_seeds: int = 1, env: Mapping[str, str | None] | None = None, only: Sequence[str] | None = None,
            created_by: str = "golfq promote", dry_run: bool = False) -> list[Promoted]:
    """Queue the best `top` feasible configs of `track` in pool `to`; `only` limits it to those configs.

    With dry_run nothing is queued: `jobs` are the ids it would use and `new` those not queued yet."""
    if top < 1:
        raise SpecError("promote --top: must be at least 1")
    seed_list = promotion_seeds(seeds) if isinstance(seeds, int) else tuple(dict.fromkeys(seeds))
    if not seed_list:
        raise SpecError("promote --seeds: must be at least 1")
    ranked = select(broker.ranking(track), top, min_seeds)
    chosen = [(rank, p) for rank, p in ranked if only is None or p.config in only]
    plans: list[tuple[int, FrontPoint, str, list[ExperimentSpec]]] = []
    for rank, point in chosen:
        parent = best_job(point)
        job = broker.get(parent)
        if job is None:  # purged: its record is gone, so its spec is too
            log.warning("promote: job %s of config %s is not in the queue; skipped", parent, point.config)
            continue
        plans.append((rank, point, parent, promoted_specs(job.spec, parent, to, seed_list, env, created_by)))
    every = [s for *_, specs in plans for s in specs]
    if dry_run:
        outcome = iter([(s.id, broker.get(s.id) is None) for s in every])
    else:
        outcome = iter([(job.id, created) for job, created in broker.submit_new(every)])
    out = []
    for rank, point, parent, specs in plans:
        pairs = [next(outcome) for _ in specs]
        out.append(Promoted(config=point.config, rank=rank, val_bpb=point.val_bpb, seeds=point.seeds, parent=parent,
                            jobs=tuple(i for i, _ in pairs), new=tuple(i for i, created in pairs if created)))
    return out


def apply_rule(broker: Broker, spec: ExperimentSpec) -> None:
    """run_rule for Broker.complete, after the success committed: it never raises, since a runner would
    retry the completion. Idempotent, so a rule lost here is made good by the config's next success."""
    try:
        for done in run_rule(broker, spec):
            if done.new:
                log.info("promoted config %s (rank %d) to %s", done.config, done.rank, ", ".join(done.new))
    except Exception as error:  # noqa: BLE001 - the result is committed; nothing here may undo or repeat it
        log.warning("promote rule of %s (%s): %s", spec.id, spec.promote, error)


def run_rule(broker: Broker, spec: ExperimentSpec) -> list[Promoted]:
    """A spec's own promote rule: its config, if it is in the top K of its track now."""
    rule = spec.promote
    if rule is None:
        return []
    return promote(broker, track_of(spec.pool), rule.to, rule.top, rule.seeds, min_seeds=rule.min_seeds,
                   only=[config_key(spec)], created_by="golfq promote rule")
