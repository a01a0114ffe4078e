"""Against real Modal: the log on real Dicts, then a deployed app running a CPU job end to end.

    MODAL_TOKEN_ID=... MODAL_TOKEN_SECRET=... pytest -m modal_live

Skipped, visibly, without a token. The deployed tests create an app named
golfq-live-XXXXXXXX (its Dicts, Queue and Volumes) and stop and delete it afterwards.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import time
import uuid
from contextlib import ExitStack

import pytest
from typer.testing import CliRunner

from golfq.core.job import CompleteOutcome, JobState
from golfq.core.result import Result
from golfq.core.spec import Budget, ExperimentSpec
from tests.modal_fakes import MemoryBlobStore

pytestmark = [
    pytest.mark.modal_live,
    pytest.mark.skipif(not os.environ.get("MODAL_TOKEN_ID"),
                       reason="MODAL_TOKEN_ID is not set: the live Modal tests need credentials (modal setup)"),
]

SCRIPT = b"""\
print("step 1/1 train_loss:2.0")
print("final_int8_zlib_roundtrip_exact val_loss:2.0000 val_bpb:1.2500")
print("Total submission size int8+zlib: 1234567 bytes")
"""


@pytest.fixture
def live_broker():
    import modal

    from golfq.core.backends.modal.broker import ModalBroker

    with ExitStack() as stack:
        dicts = {}

        def ephemeral_dict(name: str, env: str | None):
            if name not in dicts:
                dicts[name] = stack.enter_context(modal.Dict.ephemeral())
            return dicts[name]

        wake = stack.enter_context(modal.Queue.ephemeral())
        yield ModalBroker("modal://golfq-live", dict_factory=ephemeral_dict, queue_factory=lambda name, env: wake,
                          blob_store=MemoryBlobStore(), kick=lambda: None)


def test_the_lease_cycle_on_real_modal_objects(live_broker):
    job = live_broker.submit([ExperimentSpec(pool="h100", seed=1)])[0]
    assert live_broker.submit([ExperimentSpec(pool="h100", seed=1)])[0].id == job.id
    lease = live_broker.claim("h100", "live", lease_seconds=60, timeout=5)
    assert lease is not None and lease.job_id == job.id
    assert live_broker.heartbeat(lease, 120) and live_broker.heartbeat(lease, 120)  # a commit, then its own key
    result = Result(spec_id=job.id, attempt=1, status="succeeded", val_bpb=1.3, artifact_bytes=2_000_000,
                    train_seconds=100.0)
    assert live_broker.complete(lease, result) is CompleteOutcome.COUNTED
    assert live_broker.complete(lease, result) is CompleteOutcome.DUPLICATE
    assert not live_broker.heartbeat(lease)  # the revocation marker
    assert live_broker.get(job.id).state is JobState.SUCCEEDED
    assert [p.val_bpb for p in live_broker.front("1xH100").points] == [1.3]
    assert [e.kind.value for e in live_broker.events()] == ["submitted", "claimed", "succeeded"]


def test_real_dict_keeps_the_semantics_the_fakes_copy():
    import queue

    import modal

    with modal.Dict.ephemeral() as d, modal.Queue.ephemeral() as q:
        assert d.put("k", b"1", skip_if_exists=True) is True
        assert d.put("k", b"2", skip_if_exists=True) is False
        with pytest.raises(KeyError):
            d.pop("missing")
        assert q.get(block=False) is None
        with pytest.raises(queue.Empty):
            q.get(timeout=1)


@pytest.fixture(scope="module")
def deployed():
    """A fresh app with golfq's functions, deployed under a unique name; stopped and deleted afterwards."""
    import modal

    name = f"golfq-live-{uuid.uuid4().hex[:8]}"
    saved = os.environ.get("GOLFQ_MODAL_APP")
    os.environ["GOLFQ_MODAL_APP"] = name
    try:
        from golfq.workers.modal import app as modal_app

        importlib.reload(modal_app).app.deploy(name=name)
        yield name
    finally:
        subprocess.run(["modal", "app", "stop", name, "--yes"], capture_output=True, timeout=120)
        for kind, suffixes in ((modal.Dict, ("state", "leases")), (modal.Queue, ("wake",)),
                               (modal.Volume, ("artifacts", "data"))):
            for suffix in suffixes:
                try:
                    kind.objects.delete(f"{name}-{suffix}", allow_missing=True)
                except Exception:  # noqa: BLE001 - best effort: the account keeps nothing else of ours
                    pass
        if saved is None:
            os.environ.pop("GOLFQ_MODAL_APP", None)
        else:
            os.environ["GOLFQ_MODAL_APP"] = saved
        from golfq.workers.modal import app as modal_app

        importlib.reload(modal_app)  # later tests see the app they expect


def test_a_cpu_job_is_submitted_dispatched_run_and_reported(deployed):
    from golfq.core.backends.modal.broker import ModalBroker

    broker = ModalBroker(f"modal://{deployed}")  # the real Dicts, Queue and Volume; a submit kicks the dispatcher
    ref = broker.put_script(SCRIPT)
    job = broker.submit([ExperimentSpec(pool="cpu", trainer=ref, budget=Budget(train_seconds=30))])[0]
    give_up = time.monotonic() + 900
    while not (current := broker.get(job.id)).state.terminal:
        assert time.monotonic() < give_up, f"job still {current.state.value} after 15 min"
        time.sleep(5)
    assert current.state is JobState.SUCCEEDED and current.result.val_bpb == 1.25, current.error
    assert "val_bpb:1.2500" in (broker.read_log(current) or "")  # the log, from the artifacts Volume
    assert broker.view().calls[f"{job.id}/1"].ran_at is not None  # spawned by the dispatcher, started, charged
    broker.checkpoint()
    assert broker.snapshot_info() is not None and broker.snapshot_info().pos >= broker.view().pos - 1


def test_golfq_modal_status_reads_the_deployed_app(deployed):
    from golfq.cli.modal import modal_cli

    result = CliRunner().invoke(modal_cli, ["status", "--app", deployed])
    assert result.exit_code == 0, result.output
    assert "log entry" in result.output and "cpu" in result.output and "billed GPU-h" in result.output
