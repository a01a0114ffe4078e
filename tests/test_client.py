"""The Python client: submit forms, de-duplication, validation before queueing, sweeps, wait, front, cancel."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from golfq.core.errors import GolfqError, NotFoundError
from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.core.spec import parse_spec
from golfq.producer.client import Client, WaitTimeout
from golfq.producer.specfile import InputError, prepare
from golfq.workers.fleet import Fleet, FleetConfig
from tests.golfq_helpers import FINAL_LINES, REPO_ROOT, queue_url, write_script


@pytest.fixture
def client(tmp_path):
    with Client(queue_url(tmp_path)) as opened:
        yield opened


def run_fleet(tmp_path, **overrides) -> None:
    Fleet(FleetConfig(queue=queue_url(tmp_path), pool="cpu", work_root=tmp_path / "runs", burst=True,
                      heartbeat_seconds=0.5, **overrides)).run()


def test_submit_accepts_a_spec_a_dict_or_keywords_and_never_duplicates(client):
    by_keywords = client.submit(pool="cpu", env={"NUM_LAYERS": "4"}, seed=3)
    by_dict = client.submit({"pool": "cpu", "env": {"NUM_LAYERS": "4"}, "seed": 3, "name": "another name"})
    by_spec = client.submit(parse_spec({"pool": "cpu", "env": {"NUM_LAYERS": "4"}, "seed": 3}))
    assert by_keywords.id == by_dict.id == by_spec.id
    assert len(client.list()) == 1
    assert client.submit({"pool": "cpu", "NUM_LAYERS": 4, "seed": 3}).id == by_keywords.id  # shorthand env


def test_script_is_stored_and_referenced(client, tmp_path):
    script = write_script(tmp_path, "print('hi')\n")
    job = client.submit(pool="cpu", script=script)
    assert job.spec.trainer.startswith("sha256:")
    assert client.broker.get_script(job.spec.trainer) == b"print('hi')\n"


def test_submit_many_queues_nothing_when_one_spec_is_bad(client):
    with pytest.raises(InputError, match=r"spec #2: pool: unknown pool 'nope'"):
        client.submit_many([{"pool": "cpu"}, {"pool": "nope"}])
    assert client.list() == []
    with pytest.raises(InputError, match="script missing.py: no such file"):
        client.submit(pool="cpu", script="missing.py")
    assert client.list() == []


def test_sweep_is_the_product_times_the_seeds_plus_explicit_points(client):
    jobs = client.sweep({"MATRIX_LR": [0.02, 0.04], "NUM_LAYERS": [8, 9]}, base={"pool": "cpu"}, seeds=[1, 2],
                        points=[{"MODEL_DIM": 768}])
    assert len(jobs) == 2 * 2 * 2 + 2 and len({j.id for j in jobs}) == 10
    combos = {(j.spec.env.get("MATRIX_LR"), j.spec.env.get("NUM_LAYERS"), j.spec.seed) for j in jobs[:8]}
    assert combos == {(lr, n, s) for lr in ("0.02", "0.04") for n in ("8", "9") for s in (1, 2)}
    assert all(j.spec.env == {"MODEL_DIM": "768"} for j in jobs[8:])
    assert jobs[0].spec.name == "MATRIX_LR=0.02 NUM_LAYERS=8"


def test_sweep_points_may_set_spec_fields(client):
    jobs = client.sweep({"budget.train_seconds": [30, 60]}, base={"pool": "cpu"})
    assert [j.spec.budget.train_seconds for j in jobs] == [30.0, 60.0]
    with pytest.raises(InputError, match="point 1"):
        client.sweep({"budget.train_seconds": [-1]}, base={"pool": "cpu"})


def test_wait_returns_results_in_order_and_front_reads_by_pool(client, tmp_path):
    script = write_script(tmp_path, FINAL_LINES)
    good = client.submit(pool="cpu", script=script, env={"FAKE_BPB": "1.4"})
    also = client.submit(pool="cpu", script=script, env={"FAKE_BPB": "1.3", "FAKE_BYTES": "2000000"})
    bad = client.submit(pool="cpu", script=write_script(tmp_path, "raise SystemExit(4)", "bad.py"))
    worker = threading.Thread(target=run_fleet, args=(tmp_path,))
    worker.start()
    results = client.wait([bad.id, good.id, also.id], timeout=60)
    worker.join()
    assert [r.spec_id for r in results] == [bad.id, good.id, also.id]
    assert [r.status for r in results] == ["failed", "succeeded", "succeeded"]
    assert sorted(p.val_bpb for p in client.front("cpu")) == [1.3, 1.4]  # neither dominates the other
    assert client.front() == client.front("cpu")  # one track: no need to name it
    kinds = [e.kind for e in client.events(after=0)]
    assert kinds.count(EventKind.SUCCEEDED) == 2 and kinds.count(EventKind.FAILED) == 1
    assert client.list("failed") == [client.get(bad.id)]


def test_wait_raises_on_timeout_and_cancel_ends_the_job(client):
    job = client.submit(pool="cpu")
    with pytest.raises(WaitTimeout) as caught:
        client.wait([job.id], timeout=0.2)
    assert caught.value.pending == [job.id]
    assert client.cancel([job.id]) == [job.id]
    [result] = client.wait([job.id], timeout=5)
    assert result.status == "failed" and client.get(job.id).state is JobState.CANCELLED
    with pytest.raises(NotFoundError, match=r"^job aaaaaaaaaaaaaaaa: not found in sqlite:"):
        client.wait(["aaaaaaaaaaaaaaaa"], timeout=1)


@pytest.mark.parametrize("call", [
    lambda q: q.wait(["aaaaaaaaaaaaaaaa"]),
    lambda q: q.wait_next(["aaaaaaaaaaaaaaaa"], timeout=0),
    lambda q: q.front("nope"),
    lambda q: q.ranking(),
    lambda q: q.submit('pool = "cpu"\nNUM_LAYERS = 4'),
    lambda q: q.submit(b"{}"),
    lambda q: q.submit_many([["pool", "cpu"]]),
    lambda q: q.list("bogus"),
    lambda q: q.submit({"pool": "nope"}),
    lambda q: q.wait([q.submit(pool="cpu", env={"NUM_LAYERS": "2"}).id], timeout=0),
])
def test_every_client_problem_is_a_one_line_golfq_error(client, call):
    with pytest.raises(GolfqError) as caught:
        call(client)
    message = str(caught.value)
    assert message and "\n" not in message and not message.startswith("'")


def test_client_imports_without_torch():
    code = "import sys, golfq.producer.client, golfq.cli.jobs; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


class WithoutSubmitNew:
    """A broker from before Broker.submit_new: the client falls back to a look before the submit."""

    def __init__(self, broker) -> None:
        self.broker = broker

    def __getattr__(self, name: str):
        if name == "submit_new":
            raise AttributeError(name)
        return getattr(self.broker, name)


@pytest.mark.parametrize("wrap", [lambda b: b, WithoutSubmitNew], ids=["submit_new", "fallback"])
def test_submit_prepared_says_which_jobs_it_created(client, wrap):
    q = Client(broker=wrap(client.broker))
    a, b = (prepare({"pool": "cpu", "seed": s}) for s in (1, 2))
    assert [new for _, new in q.submit_prepared([a, b, a])] == [True, True, False]  # the repeat is the same job
    pairs = q.submit_prepared([b, prepare({"pool": "cpu", "seed": 3})])
    assert [(job.spec.seed, new) for job, new in pairs] == [(2, False), (3, True)]


def test_racing_producers_report_each_job_new_exactly_once(tmp_path):
    specs = [prepare({"pool": "cpu", "seed": s}) for s in range(50)]
    start = threading.Barrier(8)
    created: list[int] = []

    def producer() -> None:
        with Client(queue_url(tmp_path)) as q:
            start.wait()
            created.append(sum(new for _, new in q.submit_prepared(specs)))

    threads = [threading.Thread(target=producer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(created) == 8 and sum(created) == 50


def test_a_wait_with_no_worker_serving_the_pool_says_so_once(tmp_path, monkeypatch):
    from golfq.producer.client import Unserved
    from golfq.workers.fleet import Fleet, FleetConfig

    monkeypatch.setattr(Unserved, "CHECK_SECONDS", 0.0)
    said: list[tuple[str, int]] = []
    with Client(f"sqlite:///{tmp_path / 'q.db'}") as q:
        job = q.submit(pool="cpu", script=FINAL_LINES.encode())
        with pytest.raises(WaitTimeout):
            q.wait([job.id], timeout=0.5, on_unserved=lambda pool, n: said.append((pool, n)))
        assert said == [("cpu", 1)]  # once, not on every look
        fleet = Fleet(FleetConfig(queue=q.url, pool="cpu", concurrency=1, max_idle=30, work_root=tmp_path / "runs"))
        thread = threading.Thread(target=fleet.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while q.broker.serving("cpu") != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            [result] = q.wait([job.id], timeout=60, on_unserved=lambda pool, n: said.append((pool, n)))
        finally:
            fleet.stop(grace=0)
            thread.join()
        assert result.succeeded and said == [("cpu", 1)]  # a served pool says nothing
        assert q.broker.serving("cpu") == 0  # a fleet withdraws itself when it stops
