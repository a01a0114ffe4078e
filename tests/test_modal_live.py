"""Against real Modal: the broker over ephemeral Dicts and a Queue. Skipped, visibly, without a token."""

from __future__ import annotations

import os
from contextlib import ExitStack

import pytest

from golfq.core.job import CompleteOutcome, JobState
from golfq.core.result import Result
from golfq.core.spec import ExperimentSpec
from tests.modal_fakes import MemoryBlobStore

pytestmark = [
    pytest.mark.modal_live,
    pytest.mark.skipif(not os.environ.get("MODAL_TOKEN_ID"),
                       reason="MODAL_TOKEN_ID is not set: the live Modal test needs credentials (modal setup)"),
]


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
    assert live_broker.heartbeat(lease, 120)
    result = Result(spec_id=job.id, attempt=1, status="succeeded", val_bpb=1.3, artifact_bytes=2_000_000,
                    train_seconds=100.0)
    assert live_broker.complete(lease, result) is CompleteOutcome.COUNTED
    assert live_broker.complete(lease, result) is CompleteOutcome.DUPLICATE
    assert live_broker.get(job.id).state is JobState.SUCCEEDED
    assert [p.val_bpb for p in live_broker.front("1xH100").points] == [1.3]
    assert [e.kind.value for e in live_broker.events()] == ["submitted", "claimed", "succeeded"]


def test_real_dict_keeps_the_semantics_the_fakes_copy():
    import modal

    with modal.Dict.ephemeral() as d, modal.Queue.ephemeral() as q:
        assert d.put("k", b"1", skip_if_exists=True) is True
        assert d.put("k", b"2", skip_if_exists=True) is False
        with pytest.raises(KeyError):
            d.pop("missing")
        assert q.get(block=False) is None
        import queue

        with pytest.raises(queue.Empty):
            q.get(timeout=1)
