"""Promotion on every backend: the best configs queued in a bigger pool, deduped by spec id, and the spec rule."""

from __future__ import annotations

from golfq.core.job import CompleteOutcome, JobState
from golfq.core.promotion import promote, promotion_seeds, run_rule
from golfq.core.spec import ExperimentSpec, Promote, config_key
from tests.contract.helpers import spec, success

LR_SCORE = {"1": 1.30, "2": 1.20, "3": 1.25, "4": 1.10}  # LR=4 is best, then 2, 3, 1


def explore(broker, seeds=(1, 2), rule: Promote | None = None, lrs=("1", "2", "3", "4")) -> dict[str, list[str]]:
    """Run one h100 job per (LR, seed), scored by LR; returns the job ids of each LR."""
    specs = [ExperimentSpec(pool="h100", seed=s, env={"LR": lr}, promote=rule) for lr in lrs for s in seeds]
    ids: dict[str, list[str]] = {}
    for job in broker.submit(specs):
        ids.setdefault(job.spec.env["LR"], []).append(job.id)
    while (lease := broker.claim("h100", "w")) is not None:
        bpb = LR_SCORE[lease.spec.env["LR"]] + lease.spec.seed / 1000
        assert broker.complete(lease, success(lease, val_bpb=bpb, artifact_bytes=15_000_000)) is CompleteOutcome.COUNTED
    return ids


def test_promote_queues_the_best_k_with_n_seeds_and_again_adds_nothing(broker):
    ids = explore(broker)
    done = promote(broker, "1xH100", "h100x8", top=2, seeds=3)
    assert [(p.rank, p.parent) for p in done] == [(1, ids["4"][0]), (2, ids["2"][0])]  # seed 1 scored best
    assert all(len(p.jobs) == 3 and p.new == p.jobs and p.seeds == 2 for p in done)
    queued = broker.list(pool="h100x8")
    assert sorted(j.id for j in queued) == sorted(i for p in done for i in p.jobs)
    for job in queued:
        assert job.state is JobState.QUEUED and job.spec.seed in promotion_seeds(3)
        assert job.spec.parent in (ids["4"][0], ids["2"][0]) and job.spec.budget.train_seconds == 600.0
    again = promote(broker, "1xH100", "h100x8", top=3, seeds=3)
    assert [p.new for p in again[:2]] == [(), ()] and [p.jobs for p in again[:2]] == [p.jobs for p in done]
    assert len(again[2].new) == 3  # only the newly included third config is queued
    assert len(broker.list(pool="h100x8")) == 9


def test_a_dry_run_names_the_jobs_and_queues_nothing(broker):
    explore(broker, lrs=("2", "4"))
    preview = promote(broker, "1xH100", "h100x8", top=1, seeds=2, dry_run=True)
    assert len(preview[0].new) == 2 and broker.list(pool="h100x8") == []
    assert [p.jobs for p in promote(broker, "1xH100", "h100x8", top=1, seeds=2)] == [preview[0].jobs]


def test_the_spec_rule_promotes_a_config_when_it_enters_the_top_k(broker):
    rule = Promote(to="h100x8", top=1, seeds=2, min_seeds=2)
    ids = explore(broker, seeds=(1, 2), rule=rule, lrs=("1", "4"))
    promoted = broker.list(pool="h100x8")
    # LR=1 ran first and was the top config with 2 seeds then; LR=4 entered the top 1 when its 2nd seed landed.
    assert sorted(j.spec.parent for j in promoted) == sorted([ids["1"][0]] * 2 + [ids["4"][0]] * 2)
    assert {j.spec.created_by for j in promoted} == {"golfq promote rule"}
    assert all(j.spec.promote is None for j in promoted)
    assert run_rule(broker, broker.get(ids["4"][1]).spec)[0].new == ()  # idempotent


def test_the_rule_ignores_configs_outside_the_top_k_or_short_of_seeds(broker):
    rule = Promote(to="h100x8", top=1, seeds=1, min_seeds=2)
    explore(broker, seeds=(1,), rule=rule, lrs=("4",))  # one seed: not eligible yet
    assert broker.list(pool="h100x8") == []
    best = explore(broker, seeds=(2,), rule=rule, lrs=("4",))["4"][0]
    [job] = broker.list(pool="h100x8")
    assert job.spec.parent != best  # the parent is the config's best seed: seed 1 scored lower
    explore(broker, seeds=(1, 2), rule=rule, lrs=("1",))  # second-best config: never in the top 1
    assert len(broker.list(pool="h100x8")) == 1


def test_a_failing_rule_never_fails_the_completion(broker, monkeypatch):
    monkeypatch.setenv("GOLFQ_POOLS", "a100=1xA100")
    [job] = broker.submit([ExperimentSpec(pool="h100", promote=Promote(to="a100", top=1, seeds=1))])
    monkeypatch.delenv("GOLFQ_POOLS")  # the worker's process does not know the target pool
    lease = broker.claim("h100", "w")
    assert broker.complete(lease, success(lease)) is CompleteOutcome.COUNTED
    assert broker.get(job.id).state is JobState.SUCCEEDED and broker.list(pool="a100") == []


def test_promotion_only_counts_the_source_tracks_configs(broker):
    broker.submit([spec(pool="cpu", seed=1)])
    lease = broker.claim("cpu", "w")
    broker.complete(lease, success(lease, val_bpb=0.5))
    explore(broker, lrs=("3",))
    [done] = promote(broker, "1xH100", "h100x8", top=5, seeds=1)
    assert done.config == config_key(broker.get(done.parent).spec) and done.val_bpb > 1.2


def test_promoting_within_a_track_adds_seeds_and_finds_the_one_already_run(broker):
    [ran] = broker.submit([ExperimentSpec(pool="h100", seed=1337, env={"LR": "2"})])
    lease = broker.claim("h100", "w")
    broker.complete(lease, success(lease, val_bpb=1.2, artifact_bytes=15_000_000))
    [done] = promote(broker, "1xH100", "h100", top=1, seeds=3)
    assert ran.id in done.jobs and ran.id not in done.new and len(done.new) == 2
    assert {broker.get(i).spec.seed for i in done.jobs} == {1337, 42, 2025}
