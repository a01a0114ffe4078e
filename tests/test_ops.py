"""Ops semantics beyond the CLI's happy path: replay, export/import between queues, purge ages, usage totals."""

from __future__ import annotations

import json

import pytest

from golfq.core.backends import open_broker
from golfq.core.job import JobState
from golfq.core.result import FailureKind, Result
from golfq.core.spec import parse_spec
from golfq.ops import OpsError
from golfq.ops.cost import cost_summary
from golfq.ops.purge import parse_before
from golfq.ops.replay import plan_replay
from tests.golfq_helpers import broker, cli  # noqa: F401 (fixtures)


def make_dead(broker, seed: int) -> str:
    """A job whose infra retries are spent."""
    [job] = broker.submit([parse_spec({"pool": "cpu", "seed": seed, "budget": {"retries": {"infra": 0}}})])
    lease = broker.claim("cpu", "w")
    broker.fail(lease, "preempted", FailureKind.INFRA)
    assert broker.get(job.id).state is JobState.DEAD
    return job.id


def test_replay_after_seq_requeues_dead_jobs_only(cli, broker):
    early = make_dead(broker, 1)
    mark = broker.stats().last_seq
    late = make_dead(broker, 2)
    [done] = broker.submit([parse_spec({"pool": "cpu", "seed": 3})])
    code, out, _ = cli("ops", "replay", "--after", str(mark), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["requeued"] == [late] and doc["unchanged"] == [done.id]
    assert broker.get(late).state is JobState.QUEUED and broker.get(early).state is JobState.DEAD


def test_replay_from_an_event_file_rebuilds_a_lost_queue(cli, tmp_path, broker):
    ref = broker.put_script(b"print('x')")
    broker.submit([parse_spec({"pool": "cpu", "seed": s}) for s in (1, 2)] +
                  [parse_spec({"pool": "cpu", "trainer": ref})])
    code, out, _ = cli("events", "--json")
    (tmp_path / "events.jsonl").write_text(out)
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    code, out, _ = cli("ops", "replay", str(tmp_path / "events.jsonl"), "--queue", fresh, "--json")
    doc = json.loads(out)
    assert len(doc["submitted"]) == 2  # the scripted job cannot run where its script is missing
    assert list(doc["skipped"].values()) == [f"script {ref} is not stored in this queue"]
    assert sorted(j.id for j in open_broker(fresh).list()) == sorted(doc["submitted"])


def test_export_import_moves_unfinished_jobs_and_their_scripts(cli, tmp_path, broker):
    ref = broker.put_script(b"print('scripted')")
    queued, scripted, finished = broker.submit([parse_spec({"pool": "cpu", "seed": 1}),
                                                parse_spec({"pool": "cpu", "trainer": ref}),
                                                parse_spec({"pool": "h100", "seed": 9})])
    lease = broker.claim("h100", "w")
    broker.complete(lease, Result(spec_id=finished.id, attempt=1, status="succeeded", val_bpb=1.2, artifact_bytes=10))
    assert cli("ops", "export", str(tmp_path / "q.jsonl"))[0] == 0
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    code, out, _ = cli("ops", "import", str(tmp_path / "q.jsonl"), "--queue", target_url, "--json")
    doc = json.loads(out)
    assert sorted(doc["queued"]) == sorted([queued.id, scripted.id]) and doc["skipped_finished"] == 1
    target = open_broker(target_url)
    assert target.get_script(ref) == b"print('scripted')"
    assert target.get(finished.id) is None
    code, out, _ = cli("ops", "import", str(tmp_path / "q.jsonl"), "--queue", target_url, "--json")
    assert json.loads(out)["queued"] == []  # importing twice adds nothing


def test_import_refuses_a_tampered_script(cli, tmp_path, broker):
    broker.submit([parse_spec({"pool": "cpu", "trainer": broker.put_script(b"print(1)")})])
    cli("ops", "export", str(tmp_path / "q.jsonl"))
    lines = (tmp_path / "q.jsonl").read_text().splitlines()
    lines = [line.replace('"content_b64":"', '"content_b64":"AAAA') if '"script"' in line else line for line in lines]
    (tmp_path / "q.jsonl").write_text("\n".join(lines))
    code, _, err = cli("ops", "import", str(tmp_path / "q.jsonl"), "--queue", f"sqlite:///{tmp_path / 't.db'}")
    assert code == 2 and "does not match its sha256" in err


def test_usage_by_pool_counts_each_attempt_once(broker, monkeypatch):
    monkeypatch.setenv("GOLFQ_PRICES", "H100=3.6")
    [job] = broker.submit([parse_spec({"pool": "h100"})])
    lease = broker.claim("h100", "w")
    broker.fail(lease, "oom", FailureKind.INFRA, Result(spec_id=job.id, attempt=1, status="failed", gpu_seconds=100,
                                                        cost_usd=0.1))
    lease = broker.claim("h100", "w")
    broker.complete(lease, Result(spec_id=job.id, attempt=2, status="succeeded", gpu_seconds=300, cost_usd=0.3))
    [spent] = cost_summary(broker, "pool")
    assert (spent.key, spent.attempts, spent.gpu_seconds, spent.cost_usd) == ("h100", 2, 400, pytest.approx(0.4))


def test_purge_ages_and_dates():
    assert parse_before("7d", now=1_000_000.0) == 1_000_000.0 - 7 * 86400
    assert parse_before("90m", now=10_000.0) == 10_000.0 - 5400
    assert parse_before("2026-01-02T00:00:00+00:00") == 1767312000.0
    with pytest.raises(OpsError):
        parse_before("soon")
    for unusable in ("99999999999999d", "2999-01-01", "-"):  # overflow, future (a typo), junk
        with pytest.raises(OpsError):
            parse_before(unusable, now=1_000_000.0)


def test_purge_refuses_a_future_date_and_keeps_finished_jobs(cli, broker):
    [job] = broker.submit([parse_spec({"pool": "cpu"})])
    broker.complete(broker.claim("cpu", "w"), Result(spec_id=job.id, attempt=1, status="succeeded", val_bpb=1.2))
    for before in ("2999-01-01", "99999999999999d"):
        code, _, err = cli("ops", "purge", "--before", before)
        assert code == 2 and err.count("\n") == 1 and err.startswith("golfq: purge --before"), err
    assert broker.get(job.id).state is JobState.SUCCEEDED


def test_import_refuses_jobs_whose_script_is_nowhere(cli, tmp_path, broker):
    ref = broker.put_script(b"print('only here')")
    scripted, plain = broker.submit([parse_spec({"pool": "cpu", "trainer": ref}),
                                     parse_spec({"pool": "cpu", "seed": 3})])
    assert cli("ops", "export", str(tmp_path / "q.jsonl"))[0] == 0
    export = tmp_path / "q.jsonl"
    export.write_text("\n".join(line for line in export.read_text().splitlines() if '"script"' not in line))
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    code, _, err = cli("ops", "import", str(export), "--queue", target_url)
    assert code == 2 and err.count("\n") == 1 and ref in err and "nothing imported" in err
    target = open_broker(target_url)
    assert target.list() == []  # all or nothing: not even the builtin job went in
    target.put_script(b"print('only here')")  # the queue already holding it is enough
    target.close()
    code, out, _ = cli("ops", "import", str(export), "--queue", target_url, "--json")
    assert code == 0 and sorted(json.loads(out)["queued"]) == sorted([scripted.id, plain.id])


def test_an_unexpected_error_is_one_line_and_exit_3(cli, monkeypatch):
    from golfq.core.backends.sqlite.broker import SqliteBroker

    def broken(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(SqliteBroker, "stats", broken)
    code, _, err = cli("ops", "stats")
    assert code == 3 and err.count("\n") == 1 and "internal error: RuntimeError: disk on fire" in err


def test_drain_stops_claims_until_resume(cli, broker):
    broker.submit([parse_spec({"pool": "cpu"})])
    cli("ops", "drain", "cpu")
    assert broker.claim("cpu", "w") is None
    cli("ops", "resume", "cpu")
    assert broker.claim("cpu", "w") is not None


def test_plan_replay_ignores_pool_events(broker):
    broker.drain("cpu")
    assert plan_replay(broker, broker.events()).submit == []


def test_requeue_and_cancel_accept_rq_job_ids(cli, broker):
    dead = make_dead(broker, 1)
    code, out, err = cli("ops", "requeue", f"{dead}-1", "--json")  # as RQ's failed registry names it
    assert code == 0 and json.loads(out) == {"requeued": [dead], "unchanged": []}, err
    code, out, err = cli("ops", "cancel", f"{dead}-2", "--json")
    assert code == 0 and json.loads(out)["cancelled"] == [dead] and broker.get(dead).state is JobState.CANCELLED
    code, out, err = cli("ops", "requeue", "aaaaaaaaaaaaaaaa-1")
    assert (code, out) == (2, "") and "not found" in err and "aaaaaaaaaaaaaaaa-1" in err
