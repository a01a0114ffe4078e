"""The MCP tools an agent leans on after a submit: wait_next's cursor, logs, requeue, events, workers; compact
replies; ids and script paths checked. In-process, over the SDK's in-memory transport."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from golfq.core.result import FailureKind, Result
from golfq.producer.client import Client
from tests.golfq_helpers import broker  # noqa: F401 (fixture)

mcp = pytest.importorskip("mcp")
memory = pytest.importorskip("mcp.shared.memory")


def run(broker, tmp_path: Path, script) -> None:
    from golfq.cli.mcp import build_server

    server = build_server(Client(broker=broker), tmp_path / "specs", runs=tmp_path / "runs")

    async def main() -> None:
        async with memory.create_connected_server_and_client_session(server) as session:
            await script(session)

    asyncio.run(asyncio.wait_for(main(), timeout=60))


async def call(session, tool: str, **arguments) -> dict:
    result = await session.call_tool(tool, arguments)
    assert not result.isError, result.content[0].text
    text = result.content[0].text
    assert "\n" not in text and ", " not in text and '": ' not in text  # compact: no pretty-printing
    return json.loads(text)


async def refused(session, tool: str, **arguments) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.isError
    [line] = result.content[0].text.splitlines()
    return line


def finish(broker, ok: bool = True) -> str:
    lease = broker.claim("cpu", "w")
    if ok:
        broker.complete(lease, Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded", val_bpb=1.2,
                                      artifact_bytes=1000, train_seconds=1.0, log_tail="step 1\nfinal line"))
    else:
        broker.fail(lease, "exit 1", FailureKind.USER, Result(spec_id=lease.job_id, attempt=lease.attempt,
                                                               status="failed", log_tail="Traceback\nValueError: x"))
    return lease.job_id


def test_wait_next_with_ids_returns_each_finished_job_once_as_the_cursor_is_passed_back(broker, tmp_path):
    async def script(session):
        jobs = (await call(session, "submit", spec={"pool": "cpu", "NUM_LAYERS": 2}, seeds=[1, 2, 3]))["jobs"]
        ids = [j["id"] for j in jobs]
        done = [finish(broker), finish(broker)]  # two end before the first call, one stays queued
        seen, after = [], None
        for _ in range(2):
            nxt = await call(session, "wait_next", ids=ids, after=after, timeout_seconds=2)
            assert not nxt["timed_out"]
            seen.append(nxt["job"]["id"])
            after = nxt["cursor"]
        assert seen == done  # each once, in the order they ended
        last = await call(session, "wait_next", ids=ids, after=after, timeout_seconds=0.3)
        assert last["timed_out"] and last["job"] is None and last["cursor"] == after
        assert last["pending"] == [i for i in ids if i not in done]
        assert [u["pool"] for u in last["unserved"]] == ["cpu"] and "golfq worker --pool cpu" in last["unserved"][0][
            "hint"]
        third = finish(broker)
        nxt = await call(session, "wait_next", ids=ids, after=after, timeout_seconds=2)
        assert nxt["job"]["id"] == third and nxt["pending"] == [] and nxt["unserved"] == []

    run(broker, tmp_path, script)


def test_logs_requeue_events_and_workers(broker, tmp_path):
    async def script(session):
        [job] = (await call(session, "submit", spec={"pool": "cpu", "NUM_LAYERS": 2}))["jobs"]
        workers = await call(session, "workers")
        cpu = next(p for p in workers["pools"] if p["pool"] == "cpu")
        assert cpu["queued"] == 1 and cpu["serving"] == 0 and "golfq worker --pool cpu" in cpu["hint"]
        assert "no log yet" in await refused(session, "logs", job_id=job["id"])
        failed = finish(broker, ok=False)
        logs = await call(session, "logs", job_id=failed, tail_lines=1)
        assert logs["lines"] == ["ValueError: x"] and logs["state"] == "failed" and "tail" in logs["source"]
        again = await call(session, "requeue", ids=[failed])
        assert again == {"requeued": [failed], "unchanged": []}
        assert "not found" in await refused(session, "requeue", ids=["zzzzzzzzzzzzzzzz"])
        page = await call(session, "events", job_id=failed)
        assert [e["kind"] for e in page["events"]] == ["submitted", "claimed", "failed", "requeued"]
        assert all("spec" not in e for e in page["events"]) and page["cursor"] == page["events"][-1]["seq"]
        assert "log_tail" not in page["events"][2]["result"]  # the tail is the logs tool's
        first = await call(session, "events", after=0, limit=2)
        assert len(first["events"]) == 2 and first["cursor"] == 2

    run(broker, tmp_path, script)


def test_cancel_of_an_unknown_id_is_an_error_and_cancels_nothing(broker, tmp_path):
    async def script(session):
        [job] = (await call(session, "submit", spec={"pool": "cpu", "NUM_LAYERS": 2}))["jobs"]
        line = await refused(session, "cancel", ids=[job["id"], "nope"])
        assert "not found" in line and "nope" in line
        assert broker.get(job["id"]).state.value == "queued"
        assert await call(session, "cancel", ids=[job["id"]]) == {"cancelled": [job["id"]], "unchanged": []}
        assert await call(session, "cancel", ids=[job["id"]]) == {"cancelled": [], "unchanged": [job["id"]]}

    run(broker, tmp_path, script)


def test_a_script_outside_the_servers_dir_is_refused(broker, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "train.py").write_text("print('hi')\n")
    (tmp_path / "secret.py").write_text("print('outside')\n")

    async def script(session):
        ok = await call(session, "submit", spec={"pool": "cpu", "script": "train.py"})
        assert ok["jobs"][0]["new"]
        for path in ("../secret.py", str(tmp_path / "secret.py")):
            assert "outside the server's directory" in await refused(session, "submit",
                                                                     spec={"pool": "cpu", "script": path})
            sweep = {"base": {"pool": "cpu"}, "points": [{"script": path}]}
            assert "outside" in await refused(session, "sweep", sweep=sweep)
        assert "outside the server's directory" in await refused(session, "submit",
                                                                 spec={"pool": "cpu", "code": str(tmp_path)})
        assert len(broker.list()) == 1

    run(broker, tmp_path, script)
