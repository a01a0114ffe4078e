"""A minimal worker process for the multi-process contract tests.

    python -m tests.contract.worker_proc URL POOL WORKER_ID [--lease S] [--work S] [--idle-exit S] [--gate]

It prints `claimed JOB ATTEMPT` and `completed JOB ATTEMPT OUTCOME`, flushed, so a
test can kill or stop it at a known point. With --gate it reads one line of stdin
after each claim before it works on it (end of input opens the gate for good), so
a test knows for certain that the claim it just read is still in progress. It ignores a refused heartbeat on
purpose: a zombie that reports anyway is exactly what fencing must catch.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.contract.helpers import success
from tests.modal_server import open_url as open_broker  # open_broker, plus the fake Modal workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("pool")
    parser.add_argument("worker_id")
    parser.add_argument("--lease", type=float, default=1.0, help="lease seconds")
    parser.add_argument("--work", type=float, default=0.3, help="seconds each job 'trains'")
    parser.add_argument("--idle-exit", type=float, default=0.0, help="exit after this long with nothing to claim")
    parser.add_argument("--gate", action="store_true", help="after each claim, wait for a line (or EOF) on stdin")
    args = parser.parse_args(argv)
    broker = open_broker(args.url)
    print("ready", flush=True)
    idle_since = time.monotonic()
    while True:
        lease = broker.claim(args.pool, args.worker_id, lease_seconds=args.lease, timeout=0.2)
        if lease is None:
            if args.idle_exit and time.monotonic() - idle_since > args.idle_exit:
                return 0
            continue
        print(f"claimed {lease.job_id} {lease.attempt}", flush=True)
        if args.gate:
            sys.stdin.readline()
        if args.work:
            time.sleep(args.work / 2)
            broker.heartbeat(lease, lease_seconds=args.lease)
            time.sleep(args.work / 2)
        outcome = broker.complete(lease, success(lease))
        print(f"completed {lease.job_id} {lease.attempt} {outcome.value}", flush=True)
        idle_since = time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
