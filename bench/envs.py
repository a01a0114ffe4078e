"""The cost of a code folder's own environment, per job, on a local worker.

    python -m bench.envs              # 5 warm jobs per row
    python -m bench.envs --warm 20

One run, three kinds of job, each the same tiny code folder run end to end by the real runner
(run_lease on a SQLite queue): with no environment (the baseline), with an environment built
by this job (cold: `uv venv` + `uv pip install` of a small wheel from a local folder, offline),
and with the environment an earlier job built (warm: reused). The overhead is a job's wall time
less the baseline's median. Target: warm overhead under 2 s. uv's own cache is kept in the run's
temporary folder, so "cold" also means uv's cache is cold.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from golfq.core.backends import open_broker
from golfq.producer.specfile import prepare
from golfq.workers.runner import run_lease
from tests.envs_helpers import PACKAGE, code_folder, make_wheel

PLAIN = """\
import os
print(f"final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:{1 + int(os.environ['SEED']) / 1000}")
"""
USES_ENV = f"import {PACKAGE}\n" + PLAIN  # fails (and the bench with it) unless the environment provides it


def _job_seconds(broker, root: Path, folder: Path, seed: int) -> float:
    item = prepare({"code": str(folder), "pool": "cpu", "seed": seed})
    broker.put_script(item.script)
    broker.submit([item.spec])
    lease = broker.claim("cpu", "bench", lease_seconds=120)
    started = time.perf_counter()
    result = run_lease(broker, lease, work_root=root / "runs", heartbeat_seconds=1.0)
    elapsed = time.perf_counter() - started
    if not result.succeeded:
        raise SystemExit(f"bench job failed: {result.error}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=5, help="warm (and baseline) jobs per row")
    parser.add_argument("--cold", type=int, default=3, help="cold builds (each a new environment)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="golfq-bench-envs-") as scratch:
        root = Path(scratch)
        os.environ.update({"GOLFQ_ENV_FIND_LINKS": str(root / "wheels"), "GOLFQ_ENV_NO_INDEX": "1",
                           "GOLFQ_ENV_DIR": str(root / "envs"), "UV_CACHE_DIR": str(root / "uv-cache"),
                           "GOLFQ_DATA_DIR": str(root / "data")})
        make_wheel(root / "wheels")
        broker = open_broker(f"sqlite:///{root / 'q.db'}")
        plain = code_folder(root / "plain", requirements=None, script=PLAIN)
        seed = iter(range(1_000_000))
        _job_seconds(broker, root, plain, next(seed))  # warm-up: the queue file, the interpreter's caches
        folders = [code_folder(root / f"env{n}", requirements=f"{PACKAGE}>=1.0,!=0.{n}\n", script=USES_ENV)
                   for n in range(args.cold)]  # another specifier: another environment hash, another build
        cold = [_job_seconds(broker, root, folder, next(seed)) for folder in folders]
        baseline, warm = [], []
        for _ in range(args.warm):  # alternated, so drift in the machine's speed falls on both alike
            baseline.append(_job_seconds(broker, root, plain, next(seed)))
            warm.append(_job_seconds(broker, root, folders[0], next(seed)))
        broker.close()
    base = statistics.median(baseline)
    print(f"# golfq bench/envs.py  python {platform.python_version()}  {platform.machine()}  cpus={os.cpu_count()}  "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'job':<28}{'runs':>6}{'median s':>11}{'max s':>9}{'overhead s':>13}")
    for name, times in (("no environment (baseline)", baseline), ("environment, cold (built)", cold),
                        ("environment, warm (reused)", warm)):
        median = statistics.median(times)
        print(f"{name:<28}{len(times):>6}{median:>11.3f}{max(times):>9.3f}{median - base:>13.3f}")
    verdict = "met" if statistics.median(warm) - base < 2.0 else "MISSED"
    print(f"target: warm overhead under 2 s: {verdict}")


if __name__ == "__main__":
    main()
