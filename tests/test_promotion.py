"""Promotion's pure parts: which configs, which seeds, which budget, and the specs it builds."""

from __future__ import annotations

import pytest

from golfq.core.pareto import FrontPoint
from golfq.core.pools import get_pool
from golfq.core.promotion import (
    PROMOTED_TAG,
    best_job,
    promoted_specs,
    promotion_seeds,
    select,
    target_budget,
)
from golfq.core.spec import Budget, Retries, SpecError, config_key, parse_spec


def point(config, bpb, seeds=1, feasible=True, values=None):
    jobs = tuple(f"{config.lower()}{i}" for i in range(seeds))
    return FrontPoint(config=config, job_ids=jobs, seeds=seeds, artifact_bytes=1e6, train_seconds=60.0, val_bpb=bpb,
                      val_bpb_std=0.0, feasible=feasible, confirmed=seeds >= 3, val_bpbs=values or (bpb,) * seeds)


def test_seeds_are_fixed_so_a_repeated_promotion_names_the_same_jobs():
    assert promotion_seeds(1) == (1337,)
    assert promotion_seeds(3) == (1337, 42, 2025)
    assert promotion_seeds(5) == (1337, 42, 2025, 0, 1)
    assert len(set(promotion_seeds(20))) == 20


def test_select_takes_the_best_feasible_configs_by_mean_with_enough_seeds():
    ranking = [point("BIG", 0.9, feasible=False), point("A", 1.0), point("B", 1.1, seeds=2), point("C", 1.2, seeds=3),
               point("D", 1.05, seeds=2)]
    assert [(r, p.config) for r, p in select(ranking, 2)] == [(1, "A"), (2, "D")]
    assert [p.config for _, p in select(ranking, 5, min_seeds=2)] == ["D", "B", "C"]
    assert select(ranking, 3, min_seeds=4) == []


def test_the_parent_is_the_configs_best_seed():
    assert best_job(point("A", 1.1, seeds=3, values=(1.12, 1.09, 1.10))) == "a1"
    assert best_job(point("A", 1.1, seeds=2, values=(1.1, 1.1))) == "a0"  # ties: the smaller id


def test_the_budget_follows_the_target_tracks_time_rules():
    source = Budget(train_seconds=300, timeout_seconds=900, retries=Retries(infra=5))
    to_8x = target_budget(source, "1xH100", get_pool("h100x8"))
    assert (to_8x.train_seconds, to_8x.timeout_seconds, to_8x.retries) == (600.0, 1800.0, Retries(infra=5))
    assert target_budget(source, "8xH100", get_pool("h100x8")) is source  # more seeds on the same track
    assert target_budget(source, "cpu", get_pool("h100")) is source  # no time rule to meet


def test_promoted_specs_keep_the_experiment_and_change_pool_seed_parent_and_budget():
    source = parse_spec({"name": "wide", "pool": "h100", "env": {"MLP_MULT": "3", "TRAIN_BATCH_TOKENS": "65536"},
                         "seed": 7, "tags": ["mlp"], "priority": 4,
                         "promote": {"to": "h100x8", "top": 2}, "budget": {"train_seconds": 120}})
    specs = promoted_specs(source, "aaaaaaaaaaaaaaaa", "h100x8", (1337, 42), env={"TRAIN_BATCH_TOKENS": None})
    assert [s.seed for s in specs] == [1337, 42]
    for s in specs:
        assert (s.pool, s.parent, s.name, s.priority, s.promote) == ("h100x8", "aaaaaaaaaaaaaaaa", "wide", 4, None)
        assert s.env == {"MLP_MULT": "3"} and s.tags == ("mlp", PROMOTED_TAG)
        assert s.budget.train_seconds == 600.0 and s.data == source.data and s.trainer == source.trainer
    other_parent = promoted_specs(source, "bbbbbbbbbbbbbbbb", "h100x8", (1337, 42), env={"TRAIN_BATCH_TOKENS": None})
    assert [s.id for s in other_parent] == [s.id for s in specs]  # the parent is not part of the id
    assert config_key(specs[0]) == config_key(specs[1])


def test_promoted_specs_refuse_a_bad_pool_or_override_in_one_line():
    source = parse_spec({"pool": "h100"})
    with pytest.raises(SpecError, match="promote --to: unknown pool 'nowhere'"):
        promoted_specs(source, "aaaaaaaaaaaaaaaa", "nowhere", (1,))
    with pytest.raises(SpecError, match="env.SEED: reserved"):
        promoted_specs(source, "aaaaaaaaaaaaaaaa", "h100x8", (1,), env={"SEED": "3"})


def test_a_spec_refuses_a_promote_rule_to_an_unknown_pool_at_submit():
    from golfq.core.spec import check_pool

    with pytest.raises(SpecError, match="promote.to: unknown pool 'a100'"):
        check_pool(parse_spec({"pool": "h100", "promote": {"to": "a100"}}))
    with pytest.raises(SpecError, match="promote.top"):
        parse_spec({"pool": "h100", "promote": {"to": "h100x8", "top": 0}})
    rule = parse_spec({"pool": "h100", "promote": {"to": "h100x8"}})
    assert rule.id == parse_spec({"pool": "h100"}).id  # the rule does not change the outcome, so not the id
