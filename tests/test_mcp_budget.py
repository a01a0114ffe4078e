"""MCP `status` carries the spend caps and why a pool waits (an agent cannot raise them there)."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from golfq.core.backends import open_broker
from golfq.core.budget import scope
from golfq.core.spec import Budget, ExperimentSpec
from tests.golfq_helpers import queue_url, subprocess_env

mcp = pytest.importorskip("mcp")
stdio_client = pytest.importorskip("mcp.client.stdio").stdio_client


async def status_of(url: str, workdir) -> dict:
    server = mcp.StdioServerParameters(command=sys.executable, args=["-m", "golfq", "mcp", "--queue", url],
                                       env=subprocess_env(), cwd=str(workdir))
    async with stdio_client(server) as (read, write), mcp.ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool("status", {})
        assert not result.isError, result.content[0].text
        return json.loads(result.content[0].text)


def test_mcp_status_says_which_pool_a_cap_holds_and_why(tmp_path):
    url = queue_url(tmp_path)
    broker = open_broker(url)
    hour = Budget(train_seconds=600, timeout_seconds=3600)
    first, second = broker.submit([ExperimentSpec(pool="h100", seed=i, budget=hour, tags=("a",)) for i in (1, 2)])
    broker.set_budget(scope(tag="a"), 5.0)
    broker.claim("h100", "w")
    broker.close()
    doc = asyncio.run(asyncio.wait_for(status_of(url, tmp_path), timeout=120))
    [capped] = [s for s in doc["budget"]["scopes"] if s["cap"] is not None]
    assert capped == {"scope": "tag:a", "cap": 5.0, "spent": 0.0, "committed": 3.95}
    [waiting] = doc["budget"]["waiting"]
    assert (waiting["pool"], waiting["job_id"]) == ("h100", second.id) and "tag a" in waiting["reason"]
