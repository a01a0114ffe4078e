"""`golfq ui` in a real browser: time to first render and to filter, at 1,000, 10,000 and 100,000 jobs.

    python -m bench.ui                 # 1,000 / 10,000 / 100,000 jobs; --sizes 1000,10000 for fewer

Each size gets its own SQLite queue, seeded through the client and the broker (submit_many, then
claim and complete with made-up results; past 20,000 finished jobs the rest stay queued, since a
finished job costs a claim and a complete). The dashboard runs in this process on loopback;
headless chromium (selenium) loads it, and the page's own performance marks give the figures:

- read: the server listing the queue into its index, as `golfq ui` does before it prints its URL
  (timed in Python);
- first render: a fresh browser's navigation start to the Runs table drawn, then a reload;
- front: navigation start to the fronts drawn (both panels of every track);
- filter: the last keystroke's input event to the filtered table drawn, median of three different
  filters (FILTERS: hyperparameters, states, scores, words); it includes the page's 150 ms debounce.

Target: first render and a filter under 1 s at 10,000 jobs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from golfq.cli.ui.server import make_app
from golfq.producer.client import Client
from tests.test_ui_browser import CHROMEDRIVER, CHROMIUM, make_driver
from tests.ui_helpers import seed_queue, serve

# Three different filters, so no answer comes from the server's cache of the last query.
FILTERS = ("NUM_LAYERS>=9 state:succeeded", "MODEL_DIM=256 val_bpb<1.3", "layers12 MATRIX_LR>0.05")
MAX_FINISHED = 20_000


def _mark(driver, name: str, timeout: float = 120.0) -> float:
    """The latest performance mark of that name, in ms since navigation start; waits for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        marks = driver.execute_script(f"return performance.getEntriesByName('{name}').map(m => m.startTime)")
        if marks:
            return float(marks[-1])
        time.sleep(0.01)
    raise TimeoutError(f"no performance mark {name} within {timeout} s")


def _load(driver, url: str, mark: str) -> float:
    driver.get("about:blank")
    driver.get(url)
    return _mark(driver, mark)


def _filter_once(driver, text: str) -> float:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "filter")
    box.clear()
    driver.execute_script("performance.clearMarks('golfq:runs-rendered'); performance.clearMarks('golfq:filter-input')")
    box.send_keys(text)
    rendered = 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the table drawn after the last keystroke
        done = driver.execute_script(
            "const i = performance.getEntriesByName('golfq:filter-input'), r = performance.getEntriesByName("
            "'golfq:runs-rendered'); if (!i.length || !r.length) return null; const last = i[i.length - 1].startTime;"
            "const after = r.filter(m => m.startTime > last); return after.length ? [last, after[0].startTime] : null")
        if done:
            rendered = done[1] - done[0]
            break
        time.sleep(0.01)
    return rendered


def measure(size: int, root: Path) -> dict[str, float]:
    client = Client(f"sqlite:///{root / f'q{size}.db'}")
    began = time.perf_counter()
    finish = min(size, MAX_FINISHED)
    seed_queue(client, size, finish=finish)
    seeded = time.perf_counter() - began
    driver = make_driver()
    try:
        app = make_app(client, root / "runs")
        began = time.perf_counter()
        app.state.dashboard.index.refresh()
        read = time.perf_counter() - began
        with serve(client, root / "runs", app=app) as url:
            cold = _load(driver, url + "/#runs", "golfq:first-render")
            warm = _load(driver, url + "/#runs", "golfq:first-render")
            rows = driver.execute_script("return document.querySelectorAll('#runs tbody tr').length")
            filters = [_filter_once(driver, text) for text in FILTERS]
            front = _load(driver, url + "/#front", "golfq:first-render")
            points = driver.execute_script("return document.querySelectorAll('#fronts .pt').length")
    finally:
        driver.quit()
        client.close()
    return {"jobs": size, "finished": finish, "seed_s": seeded, "read_s": read, "first_ms": cold, "warm_ms": warm,
            "rows": rows,            "filter_ms": statistics.median(filters), "front_ms": front, "points": points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    if CHROMIUM is None or CHROMEDRIVER is None:
        raise SystemExit("bench.ui needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# golfq bench/ui.py  headless chromium, SQLite queue, cpus={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}; target at 10,000 jobs: "
          "first render and filter < 1000 ms")
    print(f"{'jobs':>8} {'finished':>8} {'seed s':>7} {'read s':>6} {'first render ms':>15} {'reload ms':>9} "
          f"{'filter ms':>9} {'front ms':>8} {'front dots':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            r = measure(size, Path(tmp))
            print(f"{r['jobs']:>8,} {r['finished']:>8,} {r['seed_s']:>7.1f} {r['read_s']:>6.1f} {r['first_ms']:>15.0f} "
                  f"{r['warm_ms']:>9.0f} {r['filter_ms']:>9.0f} {r['front_ms']:>8.0f} {r['points']:>10,}", flush=True)


if __name__ == "__main__":
    main()
