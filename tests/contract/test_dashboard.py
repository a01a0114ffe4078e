"""`golfq ui` reads every backend through the client alone: the same answers on SQLite, Redis and Modal."""

from __future__ import annotations

import pytest

from golfq.core.result import Result
from golfq.producer.client import Client
from tests.ui_helpers import report_points, seed_queue

pytest.importorskip("starlette", reason="golfq ui needs the ui extra (starlette, uvicorn)")
pytest.importorskip("httpx", reason="Starlette's test client needs httpx")


def test_the_dashboard_reads_this_backend(broker, tmp_path):
    from starlette.testclient import TestClient

    from golfq.cli.ui.server import make_app

    client = Client(broker=broker)
    ids = seed_queue(client, 12, leave_queued=2)
    lease = broker.claim("cpu", "w")
    report_points(broker, lease.job_id, lease.attempt, 0, 2)
    api = TestClient(make_app(client, tmp_path / "runs"), base_url="http://127.0.0.1")
    page = api.get("/api/jobs", params={"filter": "state:succeeded", "sort": "val_bpb"}).json()
    succeeded = sorted(client.list("succeeded"), key=lambda j: j.result.val_bpb)
    assert [r["id"] for r in page["rows"]] == [j.id for j in succeeded] and page["of"] == len(ids)
    [track] = api.get("/api/fronts").json()["tracks"]
    assert [p["config"] for p in track["points"]] == [p.config for p in client.ranking("cpu")]
    [curve] = api.get("/api/curves").json()["curves"]
    assert curve["id"] == lease.job_id and len(curve["points"]) == 2
    ops = api.get("/api/ops").json()
    assert ops["pools"][0]["leased"] == 1 and ops["spend"][0]["attempts"] == len(succeeded)
    assert api.get(f"/api/jobs/{ids[0]}").json()["job"]["id"] == ids[0]
    assert api.get("/api/jobs/nosuchjob").status_code == 404


def test_the_dashboard_shows_why_a_job_waits_on_a_cap_on_this_backend(broker, tmp_path):
    from starlette.testclient import TestClient

    from golfq.cli.ui.server import make_app

    client = Client(broker=broker)
    hour = {"train_seconds": 600, "timeout_seconds": 3600}  # $3.95 worst case on one H100
    first, second = client.submit_many([{"pool": "h100", "name": f"big{i}", "seed": i, "tags": ["agent"],
                                         "budget": hour} for i in (1, 2)])
    client.set_budget(6, tag="agent")
    lease = broker.claim("h100", "w")
    assert lease.job_id == first.id
    api = TestClient(make_app(client, tmp_path / "runs", allow_actions=True), base_url="http://127.0.0.1")
    [row] = api.get("/api/jobs", params={"filter": "waiting:budget"}).json()["rows"]
    reason = "budget tag agent: $0.00 spent + $3.95 committed + $3.95 worst case > $6.00 cap"
    assert (row["id"], row["waiting_reason"]) == (second.id, reason)
    assert [w.reason for w in client.budget().waiting] == [reason]  # what `golfq status` and MCP say
    assert api.get(f"/api/jobs/{second.id}").json()["job"]["waiting_reason"] == reason
    assert api.get("/api/ops").json()["budget"]["waiting"] == [{"pool": "h100", "job_id": second.id, "reason": reason}]
    assert api.post("/api/actions/budget", json={"usd": 8, "tag": "agent"}).status_code == 200
    assert api.get("/api/jobs", params={"filter": "waiting:budget"}).json()["total"] == 0
    assert broker.claim("h100", "w").job_id == second.id
    broker.complete(lease, Result(spec_id=first.id, attempt=lease.attempt, status="succeeded", val_bpb=1.2,
                                  artifact_bytes=1000, train_seconds=300.0, gpu_name="H100", gpu_count=1,
                                  gpu_seconds=360.0))  # $0.395
    ops = api.get("/api/ops").json()  # one figure: `ops cost`'s spend is what the caps count as spent
    tag = next(s for s in ops["budget"]["scopes"] if s["scope"] == "tag:agent")
    assert ops["spend_usd"] == pytest.approx(0.395) and tag["spent"] == pytest.approx(0.395)
    assert tag["committed"] == pytest.approx(3.95)
