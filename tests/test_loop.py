"""The loop's reads and verbs: compare, wait_next, `golfq promote`, `golfq compare`, and pareto's noise fields."""

from __future__ import annotations

import json
import threading

import pytest

from golfq.core.errors import GolfqError
from golfq.core.result import FailureKind, Result
from golfq.core.significance import Sample, compare
from golfq.core.spec import ExperimentSpec, Retries, config_key, parse_spec
from golfq.producer.client import Client
from tests.golfq_helpers import broker, cli  # noqa: F401 (fixtures)


def scored(broker, lr: str, bpbs, pool: str = "h100", loss_ratio: float | None = None) -> list[str]:
    """One job per value (seeds 1, 2, ...) of config LR=lr, run to success with that val_bpb."""
    jobs = broker.submit([ExperimentSpec(pool=pool, seed=i + 1, env={"LR": lr}) for i in range(len(bpbs))])
    for job, bpb in zip(jobs, bpbs, strict=True):
        lease = broker.claim(pool, "w")
        assert lease.job_id == job.id
        broker.complete(lease, Result(spec_id=job.id, attempt=lease.attempt, status="succeeded", val_bpb=bpb,
                                      val_loss=None if loss_ratio is None else bpb * loss_ratio,
                                      artifact_bytes=15_000_000, train_seconds=590.0, eval_seconds=300.0))
    return [j.id for j in jobs]


def test_compare_takes_job_ids_or_config_keys_and_tests_every_seed(broker):
    new = scored(broker, "new", [1.050, 1.052, 1.048])
    old = scored(broker, "old", [1.060, 1.061, 1.059], loss_ratio=2.0)
    q = Client(broker=broker)
    report = q.compare(new[1], old[0])
    by_config = q.compare(config_key(broker.get(new[0]).spec), config_key(broker.get(old[2]).spec))
    assert report.comparison == by_config.comparison
    expected = compare(Sample.of([1.050, 1.052, 1.048]), Sample.of([1.060, 1.061, 1.059], [2.12, 2.122, 2.118]))
    assert report.comparison == expected
    assert report.comparison.threshold_bpb == pytest.approx(0.0025)  # 0.005 nats at 0.5 bpb per nat (old's ratio)
    assert (report.a.seeds, report.b.seeds, report.a.track) == (3, 3, "1xH100")
    assert set(report.a.job_ids) == set(new) and report.comparison.significant is True


def test_compare_names_what_it_cannot_find_in_one_line(broker):
    [done] = scored(broker, "x", [1.0])
    [queued] = broker.submit([parse_spec({"pool": "h100", "seed": 9})])
    q = Client(broker=broker)
    with pytest.raises(GolfqError, match="neither a job nor a config"):
        q.compare("zzzzzzzzzzzzzzzz", done)
    with pytest.raises(GolfqError, match=f"job {queued.id}: its config .* no scored result yet \\(job is queued\\)"):
        q.compare(queued.id, done)
    with pytest.raises(GolfqError, match="--level"):
        q.compare(done, done, level=1.5)
    assert q.compare(done, done).comparison.significant is None  # one seed: no test


def test_wait_next_returns_a_finished_job_at_once_and_lists_the_rest(broker):
    [done] = scored(broker, "a", [1.2])
    [waiting] = broker.submit([parse_spec({"pool": "cpu"})])
    nxt = Client(broker=broker).wait_next([waiting.id, done], timeout=5)
    assert nxt.job.id == done and nxt.result.val_bpb == 1.2 and nxt.pending == (waiting.id,) and not nxt.timed_out
    timed = Client(broker=broker).wait_next([waiting.id], timeout=0.05, poll=0.01)
    assert timed.timed_out and timed.job is None and timed.pending == (waiting.id,)


def test_wait_next_on_any_job_follows_the_log_from_a_cursor(broker):
    q = Client(broker=broker)
    start = q.wait_next(timeout=0)  # nothing yet: gives the cursor to follow from
    assert start.timed_out
    jobs = broker.submit([parse_spec({"pool": "cpu", "seed": s, "budget": {"retries": {"user": 1}}}) for s in (1, 2)])
    lease = broker.claim("cpu", "w")
    broker.fail(lease, "exit 1", FailureKind.USER)  # an attempt failed, the job is queued again: not a result

    def finish_later():
        for _ in range(2):
            again = broker.claim("cpu", "w", timeout=5)
            broker.complete(again, Result(spec_id=again.job_id, attempt=again.attempt, status="succeeded",
                                          val_bpb=1.0, artifact_bytes=1))

    worker = threading.Thread(target=finish_later)
    worker.start()
    first = q.wait_next(after=start.cursor, timeout=10, poll=0.01)
    second = q.wait_next(after=first.cursor, timeout=10, poll=0.01)
    worker.join()
    assert {first.job.id, second.job.id} == {j.id for j in jobs} and first.cursor < second.cursor
    assert q.wait_next(after=second.cursor, timeout=0.05, poll=0.01).timed_out
    with pytest.raises(GolfqError, match="not found"):
        q.wait_next(["zzzzzzzzzzzzzzzz"], timeout=0)


def test_golfq_promote_reports_new_jobs_then_nothing_new(cli, broker):
    best = scored(broker, "best", [1.10, 1.11])
    scored(broker, "worse", [1.20])
    code, out, err = cli("promote", "--from", "h100", "--to", "h100x8", "--top", "1", "--seeds", "2",
                         "--set", "WARMDOWN_ITERS=900", "--unset", "LR", "--json")
    assert code == 0, err
    doc = json.loads(out)
    [promoted] = doc["promoted"]
    assert (doc["from"], doc["to"], promoted["parent"], promoted["seeds"], promoted["rank"]) == (
        "1xH100", "h100x8", best[0], 2, 1)
    assert len(promoted["new"]) == 2 and promoted["new"] == promoted["jobs"]
    assert all(broker.get(i).spec.env == {"WARMDOWN_ITERS": "900"} for i in promoted["jobs"])
    code, out, _ = cli("promote", "--from", "1xH100", "--to", "h100x8", "--top", "1", "--seeds", "2",
                       "--set", "WARMDOWN_ITERS=900", "--unset", "LR")
    assert code == 0 and "all 2 already queued" in out and len(broker.list(pool="h100x8")) == 2


def test_golfq_promote_refuses_bad_input_in_one_line(cli, broker):
    scored(broker, "a", [1.1])
    for args, message in [(("--from", "a100"), "promote --from: track 'a100': unknown"),
                          (("--from", "h100", "--top", "0"), "must be at least 1"),
                          (("--from", "h100", "--set", "NOEQUALS"), "expected KEY=VALUE")]:
        code, out, err = cli("promote", *args, "--to", "h100x8")
        assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("promote", "--from", "h100", "--to", "nowhere")
    assert code == 2 and "unknown pool 'nowhere'" in err and broker.list(pool="h100x8") == []


def test_golfq_compare_prints_the_difference_ci_p_and_the_record_rule(cli, broker):
    a = scored(broker, "a", [1.050, 1.052, 1.048])
    b = scored(broker, "b", [1.060, 1.061, 1.059])
    code, out, err = cli("compare", a[0], b[0], "--json", "--level", "0.9")
    assert code == 0, err
    doc = json.loads(out)
    expected = compare(Sample.of([1.050, 1.052, 1.048]), Sample.of([1.060, 1.061, 1.059]), level=0.9)
    assert doc["diff"] == pytest.approx(expected.diff)
    assert doc["ci"] == pytest.approx([expected.ci_low, expected.ci_high])
    assert doc["p_value"] == pytest.approx(expected.p_value) and doc["significant"] is True
    assert doc["a"]["seeds"] == 3 and doc["b"]["config"] == config_key(broker.get(b[0]).spec)
    code, out, _ = cli("compare", a[0], b[0], "--min-gain-nats", "0.05")
    assert code == 0 and "90%" not in out and "95% CI" in out and "not significant" in out
    [solo] = scored(broker, "solo", [1.0])
    code, out, _ = cli("compare", solo, b[0])
    assert code == 0 and "n/a (a test needs at least 2 seeds on each side)" in out


def test_golfq_pareto_json_carries_the_noise_fields(cli, broker):
    scored(broker, "lead", [1.050, 1.052, 1.048], pool="h100x8")
    scored(broker, "next", [1.060, 1.061, 1.059], pool="h100x8")
    code, out, err = cli("pareto", "--track", "8xH100", "--json")
    assert code == 0, err
    [track] = json.loads(out)["tracks"]
    lead = track["points"][0]
    assert track["incumbent"] == lead["config"] and lead["seeds"] == 3
    assert sorted(lead["seed_val_bpb"]) == pytest.approx([1.048, 1.050, 1.052])
    assert lead["gain_bpb"] == pytest.approx(0.01) and lead["significant"] is True and 0 < lead["p_value"] < 0.01
    assert len(track["points"]) == 1  # next: same size and time, worse score, so dominated
    code, out, _ = cli("pareto", "--track", "8xH100", "--ranking", "--json")
    ranked = json.loads(out)["tracks"][0]["points"]
    assert [p["config"] for p in ranked][0] == lead["config"] and len(ranked) == 2
    assert ranked[1]["incumbent"] == lead["config"] and ranked[1]["gain_bpb"] < 0 and ranked[1]["significant"] is False
    code, out, _ = cli("pareto", "--track", "8xH100", "--ranking")
    assert code == 0 and "yes p=" in out and "no p=" in out and f"incumbent {lead['config']} 1.0500 (3 seeds)" in out


def test_budget_retries_survive_promotion(broker):
    [job] = broker.submit([ExperimentSpec(pool="h100", budget=parse_spec({"budget": {"retries": {"user": 2}}}).budget)])
    lease = broker.claim("h100", "w")
    broker.complete(lease, Result(spec_id=job.id, attempt=1, status="succeeded", val_bpb=1.0, artifact_bytes=1))
    [done] = Client(broker=broker).promote("h100", "h100x8", top=1, seeds=1)
    assert broker.get(done.jobs[0]).spec.budget.retries == Retries(user=2)
