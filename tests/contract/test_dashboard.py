"""`golfq ui` reads every backend through the client alone: the same answers on SQLite, Redis and Modal."""

from __future__ import annotations

import pytest

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
