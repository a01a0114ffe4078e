"""`golfq mcp` driven by the official MCP client library, as Claude Code would: a subprocess on stdio."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from golfq.core.backends import open_broker
from golfq.core.result import Result
from tests.golfq_helpers import queue_url, subprocess_env

mcp = pytest.importorskip("mcp")
stdio_client = pytest.importorskip("mcp.client.stdio").stdio_client

TOOLS = {"submit", "sweep", "status", "wait_next", "front", "curve", "compare", "promote", "cancel", "requeue", "logs",
         "events", "workers"}


def run_all(url: str, scores: dict[int, float]) -> None:
    """Finish every queued h100 job as a worker would, scored by its seed."""
    broker = open_broker(url)
    try:
        while (lease := broker.claim("h100", "test")) is not None:
            bpb = scores[lease.spec.seed]
            broker.complete(lease, Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded",
                                          val_bpb=bpb, val_loss=2 * bpb, artifact_bytes=15_000_000,
                                          train_seconds=100.0))
    finally:
        broker.close()


async def call(session: mcp.ClientSession, tool: str, **arguments) -> dict:
    result = await session.call_tool(tool, arguments)
    assert not result.isError, result.content[0].text
    return json.loads(result.content[0].text)


async def session_script(url: str, workdir) -> None:
    server = mcp.StdioServerParameters(command=sys.executable, args=["-m", "golfq", "mcp", "--queue", url],
                                   env=subprocess_env(), cwd=str(workdir))
    async with stdio_client(server) as (read, write), mcp.ClientSession(read, write) as session:
        init = await session.initialize()
        assert init.serverInfo.name == "golfq" and init.capabilities.tools is not None
        listed = (await session.list_tools()).tools
        assert {t.name for t in listed} == TOOLS
        assert all(t.description for t in listed)
        assert "spec" in next(t for t in listed if t.name == "submit").inputSchema["required"]

        spec = {"pool": "h100", "NUM_LAYERS": 4, "budget": {"train_seconds": 60}}
        first = await call(session, "submit", spec=spec, seeds=[1, 2, 3])
        assert [j["seed"] for j in first["jobs"]] == [1, 2, 3] and all(j["new"] for j in first["jobs"])
        again = await call(session, "submit", spec=spec, seeds=[1])
        assert again["jobs"][0]["id"] == first["jobs"][0]["id"] and again["jobs"][0]["new"] is False
        other = await call(session, "submit", spec={**spec, "NUM_LAYERS": 5}, seeds=[1, 2, 3])
        assert (await call(session, "front"))["tracks"] == []

        run_all(url, {1: 1.100, 2: 1.101, 3: 1.099})  # both configs score the same: no record either way
        front = await call(session, "front", track="h100")
        [track] = front["tracks"]
        assert track["track"] == "1xH100" and track["groups"] == 2 and track["incumbent"] is not None
        lead = track["points"][0]
        assert lead["seeds"] == 3 and lead["val_bpb"] == pytest.approx(1.1) and lead["significant"] is False

        compared = await call(session, "compare", a=other["jobs"][0]["id"], b=first["jobs"][0]["id"])
        assert compared["diff"] == pytest.approx(0.0) and compared["significant"] is False
        promoted = await call(session, "promote", from_track="h100", to="h100x8", top=1, seeds=2)
        assert len(promoted["promoted"][0]["new"]) == 2
        repeated = await call(session, "promote", from_track="h100", to="h100x8", top=1, seeds=2)
        assert repeated["promoted"][0]["new"] == []
        done = await call(session, "wait_next", ids=[first["jobs"][0]["id"]], timeout_seconds=5)
        assert done["job"]["state"] == "succeeded" and done["result"]["val_bpb"] == pytest.approx(1.1)

        bad = await session.call_tool("submit", {"spec": {"pool": "nowhere"}})
        assert bad.isError and "pool: unknown pool 'nowhere'" in bad.content[0].text
        assert len(bad.content[0].text.splitlines()) == 1


def test_an_mcp_session_initializes_lists_tools_submits_and_reads_the_front(tmp_path):
    asyncio.run(asyncio.wait_for(session_script(queue_url(tmp_path), tmp_path), timeout=120))
