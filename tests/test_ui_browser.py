"""The dashboard in a real headless browser: Debian's chromium driven by selenium, on a seeded SQLite queue.

Screenshots go to .golfq/screenshots/ in the repository (ignored by git) for a person to look at."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from golfq.core.result import FailureKind, Result
from golfq.producer.client import Client
from tests.golfq_helpers import REPO_ROOT, wait_for
from tests.ui_helpers import report_points, seed_queue, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SHOTS = REPO_ROOT / ".golfq" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs Debian's chromium and chromedriver (apt-get install chromium chromium-driver)"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
By = pytest.importorskip("selenium.webdriver.common.by").By


def make_driver(width: int = 1400, height: int = 1000):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    client = Client(f"sqlite:///{tmp / 'q.db'}")
    ids = seed_queue(client, 52, leave_queued=2)
    with serve(client, tmp / "runs") as url:
        driver = make_driver()
        try:
            yield url, driver, client, ids
        finally:
            driver.quit()
    client.close()


def row_ids(driver, table: str) -> set[str]:
    """The ids of a table's rows, read in one script (the table may be redrawn between two reads)."""
    return set(driver.execute_script(
        f"return [...document.querySelectorAll('{table} tbody tr')].map(r => r.dataset.id)"))


def shot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_the_front_shows_every_config_and_a_click_shows_its_jobs(site):
    url, driver, client, _ = site
    driver.get(url + "/#front")
    points = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#fronts .pt"), timeout=20)
    ranking = client.ranking("cpu")
    assert len(points) == 2 * len(ranking)  # one dot per config in each of the two panels
    assert driver.find_elements(By.CSS_SELECTOR, '#fronts .pt[data-feasible="0"]'), "the 16 MB breakers are drawn"
    assert driver.find_elements(By.CSS_SELECTOR, "#fronts .incumbent-ring")
    assert "16,000,000-byte limit" in driver.find_element(By.ID, "fronts").text
    shot(driver, "front")
    best = ranking[0]
    point = driver.find_element(By.CSS_SELECTOR, f'#fronts .pt[data-config="{best.config}"]')
    driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", point)
    wait_for(lambda: row_ids(driver, "#config-jobs") == set(best.job_ids))
    shot(driver, "front-clicked")
    driver.find_element(By.ID, "cmp-incumbent").click()  # the best config against the runner-up
    wait_for(lambda: driver.find_elements(By.ID, "cmp-diff"))
    assert best.config in driver.find_element(By.ID, "cmp-table").text


def test_the_runs_table_lists_the_jobs_and_filters_them(site):
    url, driver, client, ids = site
    driver.get(url + "/#runs")
    wait_for(lambda: row_ids(driver, "#runs") == set(ids))
    header = driver.find_element(By.CSS_SELECTOR, "#runs thead").text
    assert "NUM_LAYERS" in header and "MODEL_DIM" in header and "val_bpb" in header and "cost" in header
    shot(driver, "runs")
    driver.find_element(By.CSS_SELECTOR, '#runs th[data-sort="val_bpb"]').click()
    best = min((j for j in client.list("succeeded")), key=lambda j: j.result.val_bpb)
    wait_for(lambda: driver.execute_script("return document.querySelector('#runs tbody tr').dataset.id") == best.id)
    driver.find_element(By.CSS_SELECTOR, f'#runs a[data-open="{ids[0]}"]').click()
    wait_for(lambda: driver.find_element(By.ID, "detail").is_displayed()
             and ids[1] in driver.find_element(By.ID, "detail-body").text)  # its config's other seed
    shot(driver, "job-panel")
    driver.find_element(By.ID, "detail-close").click()
    box = driver.find_element(By.ID, "filter")
    box.send_keys("NUM_LAYERS>=9 state:succeeded")
    expected = {j.id for j in client.list("succeeded") if int(j.spec.env["NUM_LAYERS"]) >= 9}
    wait_for(lambda: row_ids(driver, "#runs") == expected)
    box.clear()
    box.send_keys("NOPE>1")
    wait_for(lambda: "no column 'NOPE'" in driver.find_element(By.ID, "filter-error").text)
    shot(driver, "runs-filter-error")


def test_a_live_curve_gains_a_point_when_the_worker_reports_progress(site):
    url, driver, client, _ = site
    lease = client.broker.claim("cpu", "curve-worker")
    assert lease is not None
    report_points(client.broker, lease.job_id, lease.attempt, 0, 3)
    driver.get(url + "/#curves")
    points = lambda: driver.execute_script(
        f"const s = document.querySelector('#curve-chart .series[data-job=\"{lease.job_id}\"]');"
        "return s ? s.querySelectorAll('circle.cpt').length : -1")
    wait_for(lambda: points() == 3)
    report_points(client.broker, lease.job_id, lease.attempt, 3, 1)
    wait_for(lambda: points() == 4, timeout=15)
    shot(driver, "curves")
    client.broker.stop(lease, "median rule: above the median at 15 s")
    box = driver.find_element(By.ID, "curve-ids")
    box.send_keys(lease.job_id + "\n")  # a stopped run is no longer running: named, it is drawn with its mark
    driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", box)
    stopped = f'#curve-chart .series[data-job="{lease.job_id}"] .stop-mark'
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, stopped))
    shot(driver, "curves-stopped")


def test_parallel_coordinates_compare_and_operations_render(site):
    url, driver, client, ids = site
    driver.get(url + "/#parallel")
    lines = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#parallel-chart .pline"))
    assert len(lines) == len(client.list("succeeded"))
    shot(driver, "parallel")
    a, b = client.ranking("cpu")[0].job_ids[0], client.ranking("cpu")[-1].job_ids[0]
    driver.get(url + "/#compare")
    for field, ref in (("cmp-a", a), ("cmp-b", b)):
        driver.find_element(By.ID, field).clear()
        driver.find_element(By.ID, field).send_keys(ref)
    driver.find_element(By.ID, "cmp-go").click()
    diff = wait_for(lambda: driver.find_elements(By.ID, "cmp-diff"))
    assert diff[0].text.startswith("-")  # the best config against the worst: A is better
    shot(driver, "compare")
    driver.get(url + "/#ops")
    wait_for(lambda: "cpu" in driver.find_element(By.ID, "ops-pools").text)
    assert "spend so far" in driver.find_element(By.ID, "ops-summary").text
    assert "of the queue" in driver.find_element(By.ID, "ops-budget").text  # the spend caps, read-only
    assert not driver.find_elements(By.CSS_SELECTOR, "#ops-budget .cap-set")
    shot(driver, "ops")


def test_a_capped_job_shows_why_it_waits_and_raising_the_cap_lets_a_worker_claim_it(tmp_path):
    client = Client(f"sqlite:///{tmp_path / 'q.db'}")
    seed_queue(client, 6)
    hour = {"train_seconds": 600, "timeout_seconds": 3600}  # $3.95 worst case on one H100
    first, second = client.submit_many([{"pool": "h100", "name": f"big{i}", "seed": i, "tags": ["sweep"],
                                         "budget": hour} for i in (1, 2)])
    client.set_budget(5, pool="h100")
    client.set_budget(50, tag="sweep")
    assert client.broker.claim("h100", "w1").job_id == first.id
    assert client.broker.claim("h100", "w2") is None
    with serve(client, tmp_path / "runs", allow_actions=True) as url:
        driver = make_driver()
        try:
            driver.get(url + "/#runs")
            box = wait_for(lambda: driver.find_element(By.ID, "filter"))
            box.send_keys("waiting:budget")
            wait_for(lambda: row_ids(driver, "#runs") == {second.id})
            badge = driver.find_element(By.CSS_SELECTOR, f'#runs tr[data-id="{second.id}"] .wait')
            reason = "budget pool h100: $0.00 spent + $3.95 committed + $3.95 worst case > $5.00 cap"
            assert badge.text == "waits: budget" and badge.get_attribute("title") == reason
            driver.find_element(By.CSS_SELECTOR, f'#runs a[data-open="{second.id}"]').click()
            wait_for(lambda: driver.find_elements(By.ID, "d-waiting"))
            assert driver.find_element(By.ID, "d-waiting").text == reason
            shot(driver, "runs-waiting")
            driver.find_element(By.ID, "detail-close").click()
            driver.get(url + "/#ops")
            row = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, '#ops-budget tr[data-scope="pool:h100"]'))[0]
            assert "$5.00" in row.text and "$1.05" in row.text
            assert second.id in driver.find_element(By.ID, "ops-waiting").text
            shot(driver, "ops-budget")
            field = row.find_element(By.CSS_SELECTOR, ".cap-usd")
            field.clear()
            field.send_keys("10")
            row.find_element(By.CSS_SELECTOR, ".cap-set").click()
            wait_for(lambda: "No job waits" in driver.find_element(By.ID, "ops-waiting").text)
            assert next(s.cap for s in client.budget().scopes if s.scope == "pool:h100") == 10.0
            lease = client.broker.claim("h100", "w2")
            assert lease is not None and lease.job_id == second.id
            shot(driver, "ops-budget-raised")
        finally:
            driver.quit()
    client.close()


HOSTILE = '<img class="pwn" src="x" onerror="window.pwned=1">'


def test_user_text_in_names_tags_and_errors_is_shown_as_text_never_run(tmp_path):
    client = Client(f"sqlite:///{tmp_path / 'q.db'}")
    jobs = client.submit_many([{"pool": "cpu", "name": HOSTILE + str(seed), "seed": seed, "tags": [HOSTILE[:60]],
                                "env": {"NUM_LAYERS": "2"}} for seed in (1, 2, 3)])
    broker = client.broker
    for _ in range(2):
        lease = broker.claim("cpu", "w")
        broker.complete(lease, Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded", val_bpb=1.3,
                                      val_loss=2.2, artifact_bytes=1_000_000, train_seconds=20.0, total_seconds=30.0,
                                      gpu_count=1, gpu_name="H100", gpu_seconds=30.0))
    broker.fail(broker.claim("cpu", "w"), HOSTILE, FailureKind.USER)
    client.set_budget(5, tag=HOSTILE[:60])
    with serve(client, tmp_path / "runs") as url:
        driver = make_driver()
        try:
            for view in ("front", "runs", "ops"):
                driver.get(f"{url}/#{view}")
                wait_for(lambda v=view: HOSTILE[:20] in driver.find_element(By.ID, "view-" + v).text, timeout=20)
            driver.get(url + "/#runs")
            wait_for(lambda: len(row_ids(driver, "#runs")) == 3, timeout=20)
            driver.find_element(By.CSS_SELECTOR, f'#runs a[data-open="{jobs[2].id}"]').click()
            wait_for(lambda: HOSTILE in driver.find_element(By.ID, "detail-body").text)
            assert not driver.find_elements(By.CSS_SELECTOR, "img.pwn")
            assert driver.execute_script("return window.pwned") is None
        finally:
            driver.quit()
    client.close()
