"""`golfq ui`'s HTTP API on a seeded SQLite queue, through Starlette's test client (no browser)."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette", reason="golfq ui needs the ui extra (starlette, uvicorn)")
pytest.importorskip("httpx", reason="Starlette's test client needs httpx")
from starlette.testclient import TestClient  # noqa: E402

import golfq  # noqa: E402
from golfq.cli.ui.server import make_app  # noqa: E402
from golfq.core.job import JobState  # noqa: E402
from golfq.producer.client import Client  # noqa: E402
from tests.golfq_helpers import cli  # noqa: E402, F401 (fixture)
from tests.ui_helpers import report_points, seed_queue  # noqa: E402


@pytest.fixture
def queue(tmp_path):
    client = Client(f"sqlite:///{tmp_path / 'q.db'}")
    ids = seed_queue(client, 52, leave_queued=3)
    yield client, ids, tmp_path
    client.close()


def http(client: Client, tmp_path, allow_actions: bool = False, host: str = "127.0.0.1") -> TestClient:
    return TestClient(make_app(client, tmp_path / "runs", allow_actions), base_url=f"http://{host}")


def test_jobs_page_sort_and_filter_on_the_server(queue):
    client, ids, tmp_path = queue
    api = http(client, tmp_path)
    page = api.get("/api/jobs", params={"limit": 10, "offset": 5}).json()
    assert page["total"] == page["of"] == 52 and page["offset"] == 5
    assert [r["id"] for r in page["rows"]] == ids[5:15]  # submission order by default
    best = api.get("/api/jobs", params={"filter": "state:succeeded NUM_LAYERS>=8", "sort": "val_bpb"}).json()
    expected = sorted((j for j in client.list("succeeded") if int(j.spec.env["NUM_LAYERS"]) >= 8),
                      key=lambda j: j.result.val_bpb)
    assert [r["id"] for r in best["rows"]] == [j.id for j in expected]
    worst_first = api.get("/api/jobs", params={"filter": "state:succeeded", "sort": "val_bpb", "desc": "1"}).json()
    scores = [r["val_bpb"] for r in worst_first["rows"]]
    assert scores == sorted(scores, reverse=True)
    word = api.get("/api/jobs", params={"filter": ids[7][:10]}).json()
    assert [r["id"] for r in word["rows"]] == [ids[7]]
    row = api.get("/api/jobs", params={"filter": f"id={ids[0]}"}).json()["rows"][0]
    assert row["env"]["NUM_LAYERS"] == "2" and row["tags"] == ["ui-test", "layers2"] and row["cost_usd"] > 0


def test_the_index_follows_the_queue(queue):
    client, ids, tmp_path = queue
    api = http(client, tmp_path)
    assert api.get("/api/jobs", params={"filter": "state:queued"}).json()["total"] == 3
    client.cancel(ids[-1:])
    client.submit(pool="cpu", env={"NUM_LAYERS": "99"}, name="late")
    app_index = api.app.state.dashboard.index
    app_index.checked = 0.0  # the next read looks again at once (it waits 0.5 s between looks)
    assert api.get("/api/jobs", params={"filter": "state:queued"}).json()["total"] == 3
    assert api.get("/api/jobs", params={"filter": "NUM_LAYERS=99"}).json()["rows"][0]["name"] == "late"
    assert api.get("/api/jobs", params={"filter": "state:cancelled"}).json()["rows"][0]["id"] == ids[-1]
    newest = api.get("/api/jobs", params={"desc": "1", "limit": 2}).json()["rows"]
    assert [r["name"] for r in newest][:1] == ["late"] and newest[1]["id"] == ids[-1]  # still in submission order


@pytest.mark.parametrize("params, message", [
    ({"filter": "NOPE>3"}, "no column 'NOPE'"),
    ({"filter": "val_bpb<abc"}, "'abc' is not a number"),
    ({"filter": "name>x"}, "not a number"),
    ({"filter": "state:"}, "give a value"),
    ({"filter": "tags>3"}, "tags take"),
    ({"sort": "shoe_size"}, "no such column"),
    ({"limit": "many"}, "not a whole number"),
    ({"limit": "0"}, "between 1 and 1000"),
])
def test_a_bad_table_request_answers_400_with_a_message(queue, params, message):
    client, _, tmp_path = queue
    response = http(client, tmp_path).get("/api/jobs", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_unknown_things_answer_404(queue):
    client, _, tmp_path = queue
    api = http(client, tmp_path)
    for path in ("/api/jobs/nosuchjob", "/api/jobs/nosuchjob/log", "/api/curves?ids=nosuchjob", "/api/nowhere",
                 "/api/parallel?track=moon"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert "error" in response.json()
    assert "job nosuchjob: not found" in api.get("/api/jobs/nosuchjob").json()["error"]
    assert api.get("/api/compare", params={"a": "nosuchjob", "b": "x"}).status_code == 400
    assert api.get("/api/parallel").status_code == 400


def test_fronts_carry_every_config_with_limits_tests_and_the_incumbent(queue):
    client, _, tmp_path = queue
    doc = http(client, tmp_path).get("/api/fronts").json()
    [track] = doc["tracks"]
    ranking = client.ranking("cpu")
    front = client.front("cpu")
    assert [p["config"] for p in track["points"]] == [p.config for p in ranking]
    assert {p["config"] for p in track["points"] if p["on_front"]} == {p.config for p in front}
    assert track["limits"]["artifact_bytes"] == 16_000_000 and track["limits"]["train_seconds"] == 600
    incumbent = [p for p in track["points"] if p["incumbent"]]
    assert len(incumbent) == 1 and incumbent[0]["seeds"] >= 2
    assert any(not p["feasible"] for p in track["points"])
    tested = [p for p in track["points"] if p["p_value"] is not None]
    assert tested and all(p["gain"] is not None for p in tested)


def test_curves_default_to_the_running_jobs_and_follow_progress(queue):
    client, _, tmp_path = queue
    api = http(client, tmp_path)
    assert api.get("/api/curves").json() == {"curves": []}
    lease = client.broker.claim("cpu", "w")
    report_points(client.broker, lease.job_id, lease.attempt, 0, 2)
    api.app.state.dashboard.index.checked = 0.0
    [curve] = api.get("/api/curves").json()["curves"]
    assert curve["id"] == lease.job_id and len(curve["points"]) == 2 and curve["state"] == "leased"
    report_points(client.broker, lease.job_id, lease.attempt, 2, 1)
    assert len(api.get("/api/curves", params={"ids": lease.job_id}).json()["curves"][0]["points"]) == 3
    many = ",".join([lease.job_id] * 21)
    assert api.get("/api/curves", params={"ids": many}).status_code == 400


def test_lineage_parallel_compare_and_operations(queue):
    client, ids, tmp_path = queue
    child = client.submit(pool="cpu", env={"NUM_LAYERS": "2", "MODEL_DIM": "64"}, seed=5, parent=ids[0])
    api = http(client, tmp_path)
    doc = api.get(f"/api/jobs/{ids[0]}").json()
    assert [r["id"] for r in doc["children"]] == [child.id]
    assert ids[1] in [r["id"] for r in doc["seeds"]]  # the other seed of its config
    assert api.get(f"/api/jobs/{child.id}").json()["parent"]["id"] == ids[0]
    parallel = api.get("/api/parallel", params={"track": "cpu"}).json()
    assert [a["key"] for a in parallel["axes"]] == ["MODEL_DIM", "NUM_LAYERS"]
    assert parallel["shown"] == len(client.list("succeeded"))
    best, worst = client.ranking("cpu")[0], client.ranking("cpu")[-1]
    compared = api.get("/api/compare", params={"a": best.config, "b": worst.job_ids[0]}).json()
    report = client.compare(best.config, worst.job_ids[0])
    assert compared["diff"] == pytest.approx(report.comparison.diff) and compared["diff"] < 0
    assert compared["p_value"] == pytest.approx(report.comparison.p_value)
    assert compared["a"]["name"] == client.get(best.job_ids[0]).spec.name
    client.broker.announce("cpu", "worker-a", 60)
    ops = api.get("/api/ops").json()
    [pool] = ops["pools"]
    assert pool["queued"] == 4 and pool["succeeded"] == len(client.list("succeeded")) and pool["workers"] == 1
    assert ops["spend_usd"] > 0 and ops["spend"][0]["attempts"] == pool["succeeded"]  # the fails reported no Result


def test_the_log_is_the_file_on_this_machine_or_the_stored_tail(queue):
    from golfq.workers.runner import LOG_NAME, attempt_dir

    client, ids, tmp_path = queue
    api = http(client, tmp_path)
    assert api.get(f"/api/jobs/{ids[0]}/log").json()["source"] == "none"
    job = client.get(ids[0])
    log = attempt_dir(tmp_path / "runs", job.id, job.attempt) / LOG_NAME
    log.parent.mkdir(parents=True)
    log.write_text("step:1/10 train_loss:4.0\n" + "x" * 300_000 + "\nthe end\n")
    doc = api.get(f"/api/jobs/{ids[0]}/log").json()
    assert doc["source"] == str(log) and doc["truncated"] and doc["text"].endswith("the end\n")
    assert len(doc["text"]) == 200_000  # the last 200 kB


def test_actions_are_refused_unless_allowed(queue):
    client, ids, tmp_path = queue
    queued = [j.id for j in client.list("queued")]
    response = http(client, tmp_path).post("/api/actions/cancel", json={"ids": queued[:1]})
    assert response.status_code == 403 and "--allow-actions" in response.json()["error"]
    assert client.get(queued[0]).state is JobState.QUEUED
    api = http(client, tmp_path, allow_actions=True)
    assert api.post("/api/actions/cancel", json={"ids": queued[:1]}).json()["changed"] == queued[:1]
    assert client.get(queued[0]).state is JobState.CANCELLED
    assert api.post("/api/actions/requeue", json={"ids": queued[:1]}).json()["changed"] == queued[:1]
    assert client.get(queued[0]).state is JobState.QUEUED
    assert api.post("/api/actions/cancel", json={"ids": ["nosuchjob"]}).status_code == 404
    assert api.post("/api/actions/cancel", json={"ids": "x"}).status_code == 400
    assert api.post("/api/actions/cancel", content=b"ids=x",
                    headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 415
    assert api.post("/api/actions/explode", json={}).status_code == 404
    assert api.get("/api/actions/cancel").status_code in (404, 405)  # actions are POST only


def test_a_foreign_host_name_is_refused(queue):
    client, _, tmp_path = queue
    assert http(client, tmp_path, host="attacker.example").get("/api/info").status_code == 400


def test_served_on_a_network_it_answers_only_its_own_names(queue):
    import socket

    from golfq.cli.ui.server import allowed_hosts

    client, _, tmp_path = queue
    for bind, extra in (("0.0.0.0", ()), ("10.1.2.3", ("dash.lab",))):
        hosts = allowed_hosts(bind, extra)
        app = make_app(client, tmp_path / "runs", True, hosts)
        # a page elsewhere reaching the server through a rebound DNS name is refused, actions included
        rebound = TestClient(app, base_url="http://attacker.example")
        assert rebound.get("/api/info").status_code == 400
        assert rebound.post("/api/actions/cancel", json={"ids": []}).status_code == 400
        own = [socket.gethostname()] if bind == "0.0.0.0" else ["10.1.2.3", "dash.lab"]
        for name in [*own, "127.0.0.1"]:
            assert TestClient(app, base_url=f"http://{name}").get("/api/info").status_code == 200, name
    assert "*" not in allowed_hosts("0.0.0.0") and "[::2]" in allowed_hosts("::2")


def test_the_page_and_its_assets_are_served_from_the_package(queue):
    client, _, tmp_path = queue
    api = http(client, tmp_path)
    page = api.get("/").text
    for asset in ("/static/app.js", "/static/charts.js", "/static/app.css"):
        assert asset in page
        assert api.get(asset).status_code == 200
    assert "http" not in page.replace("http://www.w3.org", "")  # nothing from a CDN


def test_a_stopped_run_is_marked_in_its_curve(queue):
    client, _, tmp_path = queue
    lease = client.broker.claim("cpu", "w")
    report_points(client.broker, lease.job_id, lease.attempt, 0, 3)
    client.broker.stop(lease, "median rule: above the median at 30 s")
    [curve] = http(client, tmp_path).get("/api/curves", params={"ids": lease.job_id}).json()["curves"]
    assert curve["stopped"] is True and len(curve["points"]) == 3 and "median rule" in curve["error"]


def test_golfq_ui_serves_until_stopped_and_refuses_a_bad_port(queue):
    import re
    import subprocess
    import urllib.request

    from tests.golfq_helpers import golfq_command, subprocess_env

    client, _, tmp_path = queue
    url = client.url
    bad = subprocess.run(golfq_command("ui", "--queue", url, "--port", "70000"), capture_output=True, text=True,
                         env=subprocess_env(), timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "70000" in bad.stderr
    proc = subprocess.Popen(golfq_command("ui", "--queue", url, "--port", "0"), stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(), cwd=tmp_path)
    try:
        lines = []
        while not (found := re.search(r"at (http://127\.0\.0\.1:\d+/)", "".join(lines))):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert "52 job(s) read" in "".join(lines)
        with urllib.request.urlopen(found[1] + "api/info", timeout=10) as response:
            assert b'"jobs":52' in response.read()
    finally:
        proc.terminate()
        proc.wait(20)


HOUR = {"train_seconds": 600, "timeout_seconds": 3600}  # $3.95 worst case on one H100
REASON = "budget pool h100: $0.00 spent + $3.95 committed + $3.95 worst case > $5.00 cap"


def capped(client: Client) -> list[str]:
    """Three H100 jobs under a $5 pool cap: the first claimed ($3.95 committed), the other two held back."""
    jobs = client.submit_many([{"pool": "h100", "name": f"big{i}", "seed": i, "budget": HOUR} for i in range(3)])
    client.set_budget(5, pool="h100")
    assert client.broker.claim("h100", "w").job_id == jobs[0].id
    return [j.id for j in jobs]


def test_caps_and_why_jobs_wait_appear_in_runs_the_job_panel_and_operations(queue):
    client, _, tmp_path = queue
    ids = capped(client)
    api = http(client, tmp_path)
    waiting = api.get("/api/jobs", params={"filter": "waiting:budget"}).json()["rows"]
    assert [(r["id"], r["state"], r["waiting_reason"]) for r in waiting] == [(i, "queued", REASON) for i in ids[1:]]
    assert api.get("/api/jobs", params={"filter": "waiting!=budget state:queued"}).json()["total"] == 3  # the cpu ones
    assert api.get(f"/api/jobs/{ids[1]}").json()["job"]["waiting_reason"] == REASON
    assert api.get(f"/api/jobs/{ids[0]}").json()["job"]["waiting"] == ""  # running: it waits on nothing
    ops = api.get("/api/ops").json()
    scopes = {s["scope"]: s for s in ops["budget"]["scopes"]}
    assert scopes["pool:h100"] == {"scope": "pool:h100", "label": "pool h100", "cap": 5.0, "spent": 0.0,
                                   "committed": 3.95, "left": pytest.approx(1.05)}
    assert scopes["queue"]["cap"] is None and scopes["queue"]["spent"] == pytest.approx(ops["spend_usd"], abs=1e-4)
    status_view = client.budget()  # what `golfq status` prints: each pool's first held job and its reason
    assert ops["budget"]["waiting"] == [{"pool": "h100", "job_id": ids[1], "reason": REASON}]
    assert [(w.job_id, w.reason) for w in status_view.waiting] == [(ids[1], REASON)]
    assert ops["budget"]["jobs_waiting"] == 2


def test_setting_a_cap_is_forbidden_without_the_flag_and_releases_jobs_with_it(queue):
    client, _, tmp_path = queue
    ids = capped(client)
    refused = http(client, tmp_path).post("/api/actions/budget", json={"usd": 100, "pool": "h100"})
    assert refused.status_code == 403 and "--allow-actions" in refused.json()["error"]
    assert client.broker.claim("h100", "w") is None  # the cap stands
    api = http(client, tmp_path, allow_actions=True)
    assert api.get("/api/jobs", params={"filter": "waiting:budget"}).json()["total"] == 2
    before = api.get("/api/info").json()
    raised = api.post("/api/actions/budget", json={"usd": "$9", "pool": "h100"}).json()["budget"]
    after = api.get("/api/info").json()  # no event, yet the rows changed: the page redraws on rows_version
    assert after["seq"] == before["seq"] and after["rows_version"] > before["rows_version"]
    assert after["version"] == golfq.__version__
    assert {s["scope"]: s["cap"] for s in raised["scopes"]}["pool:h100"] == 9.0 and raised["jobs_waiting"] == 0
    assert client.broker.claim("h100", "w").job_id == ids[1]  # $3.95 + $3.95 fit under $9
    api.app.state.dashboard.index.checked = 0.0
    [held] = api.get("/api/jobs", params={"filter": "waiting:budget"}).json()["rows"]  # a third would not fit
    assert held["id"] == ids[2] and "$7.90 committed" in held["waiting_reason"]
    api.post("/api/actions/budget", json={"usd": 2, "tag": "sweep"})
    assert [(s.scope, s.cap) for s in client.budget().scopes if s.cap is not None] == [("pool:h100", 9.0),
                                                                                        ("tag:sweep", 2.0)]
    cleared = api.post("/api/actions/budget", json={"usd": None, "pool": "h100"}).json()["budget"]
    assert cleared["jobs_waiting"] == 0 and cleared["waiting"] == []
    assert client.broker.claim("h100", "w").job_id == ids[2]


@pytest.mark.parametrize("body, message", [
    ({"usd": "lots", "pool": "h100"}, "budget: 'lots' is not a number of dollars"),
    ({"usd": -1}, "budget: a cap cannot be negative"),
    ({"usd": [5]}, "is not a number of dollars"),
    ({"usd": True}, "is not a number of dollars"),
    ({"usd": 5, "pool": "tpu"}, "budget: unknown pool 'tpu'"),
    ({"usd": 5, "pool": "h100", "tag": "x"}, "budget: give a pool or a tag, not both"),
    ({"usd": 5, "pool": 3}, "budget: pool and tag are names"),
    ({"pool": "h100"}, "budget: the body needs usd"),
    ({"usd": 5, "scope": "queue"}, "unknown key 'scope'"),
])
def test_a_bad_cap_answers_400_with_one_line_and_sets_nothing(queue, body, message):
    client, _, tmp_path = queue
    response = http(client, tmp_path, allow_actions=True).post("/api/actions/budget", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error and "\n" not in error
    assert [s for s in client.budget().scopes if s.cap is not None] == []


@pytest.mark.parametrize("extra, message", [
    ({"top": None}, "promote: top must be a whole number"),  # the page sends NaN, an empty box, as null
    ({"seeds": [3]}, "promote: seeds must be a whole number"),
    ({"top": "abc"}, "promote: top must be a whole number"),
    ({"top": 2.5}, "promote: top must be a whole number"),
])
def test_a_bad_promote_answers_400_with_one_line_and_queues_nothing(queue, extra, message):
    client, _, tmp_path = queue
    before = len(client.list())
    response = http(client, tmp_path, allow_actions=True).post(
        "/api/actions/promote", json={"from": "cpu", "to": "h100", **extra})
    assert response.status_code == 400 and response.json()["error"].startswith(message), response.text
    assert len(client.list()) == before


def test_an_address_this_machine_lacks_is_named_and_the_port_hint_kept_for_a_busy_port(cli):
    code, out, err = cli("ui", "--host", "192.0.2.1", "--port", "0")  # TEST-NET-1: never this machine's
    assert (code, out) == (2, "")
    [line] = [x for x in err.splitlines() if x.startswith("golfq: ")]
    assert line.startswith("golfq: ui: cannot serve on 192.0.2.1:0") and "--host" in line and "--port" not in line
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        code, _, err = cli("ui", "--port", str(busy.getsockname()[1]))
    assert code == 2 and "try --port 0" in err
