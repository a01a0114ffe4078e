"""A real redis-server for tests: loopback, free port, tmp dir, append-only on.

CI may export GOLFQ_TEST_REDIS_URL (a server it started); otherwise one server is
started lazily per test session and stopped at exit. Tests that need one call
shared_url() and skip, visibly, when /usr/bin/redis-server is missing.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

REDIS_SERVER = os.environ.get("GOLFQ_REDIS_SERVER", "/usr/bin/redis-server")


def available() -> bool:
    return bool(os.environ.get("GOLFQ_TEST_REDIS_URL")) or Path(REDIS_SERVER).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process; restart() keeps its port, dir and data."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = Path(directory)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        give_up = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return self
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited {self.proc.returncode}; "
                                       f"see {self.dir / 'redis.log'}") from None
            if time.monotonic() > give_up:
                raise RuntimeError("redis-server did not answer within 20 s")
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean shutdown: Redis fsyncs its append-only file first."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


_shared: RedisServer | None = None


def shared_url() -> str | None:
    """GOLFQ_TEST_REDIS_URL, or this session's server; None when there is none to run."""
    global _shared
    if os.environ.get("GOLFQ_TEST_REDIS_URL"):
        return os.environ["GOLFQ_TEST_REDIS_URL"]
    if not Path(REDIS_SERVER).exists():
        return None
    if _shared is None:
        directory = Path(tempfile.mkdtemp(prefix="golfq-redis-"))
        _shared = RedisServer(directory).start()
        atexit.register(lambda: (_shared.stop(), shutil.rmtree(directory, ignore_errors=True)))
    return _shared.url


def fresh_url() -> str | None:
    """shared_url() with its db emptied, so each test starts clean."""
    url = shared_url()
    if url is not None:
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
    return url
