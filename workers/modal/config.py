"""Modal pool settings: one function per pool, its GPU, autoscaler and caps.

Defaults below; override with a TOML (or JSON) file named by GOLFQ_MODAL_CONFIG:

    [pools.h100]
    max_containers = 16
    max_gpu_hours = 200
    [pools.h100x8]
    cpu = 48.0                   # physical cores for 8 ranks, data loading and torch.compile

`golfq modal deploy` bakes the resolved settings into the functions' environment
(GOLFQ_MODAL_CONFIG_JSON), so the dispatcher in the cloud enforces exactly what was
deployed.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from pathlib import Path

import msgspec

from golfq.core.errors import GolfqError
from golfq.core.pools import known_pools
from golfq.core.settings import settings
from golfq.core.spec import Budget

MODAL_MAX_TIMEOUT = 24 * 3600
SETUP_SECONDS = 600  # image pull, volume mount, data open, torch.compile: on top of the spec's hard timeout


class ModalConfigError(GolfqError, ValueError):
    """The Modal settings are unusable; the message is one line."""


class PoolConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    function: str  # the Modal function's name in the app
    gpu: str | list[str] | None = None  # "H100!", "H100!:8": the pool's GPU, pinned (see validate)
    cpu: float | None = None  # physical cores reserved (Modal's default is 0.125)
    memory_mib: int | None = None  # memory reserved (Modal's default is 128 MiB)
    max_containers: int = 4  # Modal's autoscaler ceiling (a backstop; the dispatcher's caps come first)
    buffer_containers: int = 0
    scaledown_window: int = 120  # seconds an idle container stays warm before the pool scales to zero
    retries: int = 2  # Modal re-runs the same call after a preemption or crash (same lease, same attempt)
    timeout_seconds: int = int(Budget().hard_timeout) + SETUP_SECONDS
    startup_seconds: float = 900.0  # the start-up lease: renewed while Modal still holds the call (waiting for a GPU)
    max_gpus: int | None = None  # concurrent GPUs the dispatcher may hold in this pool
    max_gpu_hours: float | None = None  # total GPU-hours; past it jobs wait (never dropped)


class ModalConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pools: dict[str, PoolConfig]
    dispatch_every_seconds: int = 60
    heartbeat_seconds: float = 15.0
    lease_seconds: float = 120.0  # once a container runs, each heartbeat extends the lease this far


# GPU functions reserve CPU and memory: Modal's default (0.125 cores, 128 MiB) starves 8 ranks, their data
# loaders and torch.compile's workers. "H100!" pins the type: plain "H100" may be placed on an H200,
# whose results would be filed on an H100 track.
# Scale-down windows per pool (bench/elastic.py, BENCHMARKS.md): a warm container saves the next job a cold start only
# if that job is spawned within the window, and idles on every GPU until then. Behind a pool's cap, the finishing
# run's commit kicks the dispatcher, which spawns the next queued job within seconds, or the scheduled pass does
# within dispatch_every_seconds if the kick was lost: a 1-GPU pool, with its streams of short jobs, keeps that long.
# An 8xH100 pool runs few jobs of hours, each next one an agent's thought away; 8 idle GPUs cost more than the
# cold start a lost kick would save, so its window covers the kick alone.
DEFAULT_POOLS: dict[str, PoolConfig] = {
    "cpu": PoolConfig(function="run_cpu", cpu=4.0, memory_mib=8192, max_containers=8, startup_seconds=300.0),
    "h100": PoolConfig(function="run_h100", gpu="H100!", cpu=8.0, memory_mib=65536, max_containers=8, max_gpus=8,
                       scaledown_window=60),
    "h100x8": PoolConfig(function="run_h100x8", gpu="H100!:8", cpu=32.0, memory_mib=262144, max_containers=2,
                         max_gpus=16, scaledown_window=30, startup_seconds=1800.0),
}
PINNED = {"H100": "H100!"}  # GPU types Modal may silently upgrade, and the spelling that stops it


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as error:
        raise ModalConfigError(f"{path}: {' '.join(str(error).split())}") from None


def load_config(path: str | os.PathLike[str] | None = None) -> ModalConfig:
    """Defaults, then GOLFQ_MODAL_CONFIG_JSON (what was deployed), then the file, pool by pool."""
    raw: dict = {}
    inline = settings().modal_config_json
    path = path or settings().modal_config
    if inline:
        raw = json.loads(inline)
    elif path:
        raw = _read(Path(path))
    pools = {name: msgspec.structs.asdict(cfg) for name, cfg in DEFAULT_POOLS.items()}
    for name, override in (raw.get("pools") or {}).items():
        base = pools.get(name, {"function": f"run_{name}"})
        if not isinstance(override, dict):
            raise ModalConfigError(f"pools.{name}: expected a table of settings")
        pools[name] = {**base, **override}
    try:
        config = msgspec.convert({**raw, "pools": pools}, type=ModalConfig)
    except msgspec.ValidationError as error:
        raise ModalConfigError(f"modal config: {error}") from None
    validate(config)
    return config


def validate(config: ModalConfig) -> None:
    known = known_pools()
    for name, pool in config.pools.items():
        if name not in known:
            raise ModalConfigError(f"pools.{name}: not a known pool (known: {', '.join(sorted(known))})")
        if pool.max_containers < 1 or pool.buffer_containers < 0:
            raise ModalConfigError(f"pools.{name}: max_containers must be >= 1 and buffer_containers >= 0")
        if not 2 <= pool.scaledown_window <= 3600:
            raise ModalConfigError(f"pools.{name}.scaledown_window: Modal allows 2..3600 seconds")
        if not 1 <= pool.timeout_seconds <= MODAL_MAX_TIMEOUT:
            raise ModalConfigError(f"pools.{name}.timeout_seconds: Modal allows 1..{MODAL_MAX_TIMEOUT} seconds")
        if bool(pool.gpu) != bool(known[name].gpus):
            raise ModalConfigError(f"pools.{name}.gpu: pool {name} has {known[name].gpus} GPUs per job")
        for option in [pool.gpu] if isinstance(pool.gpu, str) else pool.gpu or []:
            _check_gpu(name, option, known[name].gpus, known[name].gpu_type)


def _check_gpu(name: str, option: str, count: int, gpu_type: str) -> None:
    """Each GPU option must be the pool's own type and count: results are filed on the pool's track."""
    want = PINNED.get(gpu_type.upper(), gpu_type.upper())
    kind, _, number = option.partition(":")
    spelled = f"{want}:{count}" if count > 1 else want
    if kind.upper() != want or (int(number) if number.isdigit() else 1) != count:
        raise ModalConfigError(f"pools.{name}.gpu: {option!r} may run on other hardware than the pool's "
                               f"{count}x{gpu_type} track; use {spelled!r} (or declare a pool for it in GOLFQ_POOLS)")


def as_json(config: ModalConfig) -> str:
    return msgspec.json.encode(config).decode()


def call_timeout(pool: PoolConfig, hard_timeout: float) -> int | None:
    """The per-call timeout a spec's budget needs, or None when the declared one covers it.

    Larger budgets round up to whole hours so only a few function variants exist.
    """
    need = math.ceil(hard_timeout) + SETUP_SECONDS
    if need <= pool.timeout_seconds:
        return None
    if need > MODAL_MAX_TIMEOUT:
        raise ModalConfigError(f"budget: a hard timeout of {hard_timeout:g} s does not fit Modal's 24 h call limit")
    return min(MODAL_MAX_TIMEOUT, math.ceil(need / 3600) * 3600)
