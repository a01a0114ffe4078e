"""Every GOLFQ_* environment variable, read here and nowhere else.

`settings()` parses the process environment into one frozen Settings record. It is
parsed again only when a GOLFQ_* variable changed (tests and `golfq modal deploy`
set some), so callers may ask for it freely. Records never read the environment:
what a stored job means does not depend on the shell that reads it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from golfq.core.errors import SettingsError

PREFIX = "GOLFQ_"
DEFAULT_QUEUE = "sqlite:///.golfq/golfq.db"
DEFAULT_DETECT_SECONDS = 120.0
DEFAULT_PROGRESS_SECONDS = 10.0


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    queue: str = DEFAULT_QUEUE  # GOLFQ_QUEUE: the queue URL every verb uses by default
    extra_pools: dict[str, tuple[int, str]] = {}  # GOLFQ_POOLS "a100=1xA100": name -> (GPUs per job, GPU type)
    prices: dict[str, float] = {}  # GOLFQ_PRICES "H100=2.49": USD per GPU-hour, over the built-in table
    data_dir: Path = Path.home() / ".cache" / "golfq" / "data"  # GOLFQ_DATA_DIR: prepared datasets, tokenizers
    work_dir: Path = Path(".golfq") / "runs"  # GOLFQ_WORK_DIR: where local attempts run and keep logs
    detect_seconds: float = DEFAULT_DETECT_SECONDS  # GOLFQ_DETECT_SECONDS: a dead Redis worker is noticed within this
    progress_seconds: float = DEFAULT_PROGRESS_SECONDS  # GOLFQ_PROGRESS_SECONDS: a live curve keeps one point per this
    # GOLFQ_CHECKPOINT_SECONDS: a run saves a checkpoint every this many seconds (CHECKPOINT_SECONDS); None: its default
    checkpoint_seconds: float | None = None
    debug: bool = False  # GOLFQ_DEBUG: tracebacks instead of one-line internal errors
    modal_app: str = "golfq"  # GOLFQ_MODAL_APP
    modal_env: str | None = None  # GOLFQ_MODAL_ENV
    modal_config: Path | None = None  # GOLFQ_MODAL_CONFIG: a TOML/JSON file of pool settings
    modal_config_json: str | None = None  # GOLFQ_MODAL_CONFIG_JSON: what `golfq modal deploy` baked in
    artifacts_mount: Path | None = None  # GOLFQ_ARTIFACTS_MOUNT: the artifacts Volume inside a Modal container
    env_dir: Path | None = None  # GOLFQ_ENV_DIR: code folders' virtualenvs (default: envs/ under the work root)
    env_find_links: tuple[str, ...] = ()  # GOLFQ_ENV_FIND_LINKS: folders or URLs of wheels, comma-separated
    env_no_index: bool = False  # GOLFQ_ENV_NO_INDEX: install only from find-links (offline workers, tests)
    env_provided: str | None = None  # GOLFQ_ENV_PROVIDED: the environment a Modal image was built for


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _pools(text: str) -> dict[str, tuple[int, str]]:
    pools: dict[str, tuple[int, str]] = {}
    for item in _items(text):
        name, _, hardware = item.partition("=")
        count, _, gpu = hardware.partition("x")
        if not (name.strip() and count.isdigit() and gpu):
            raise SettingsError(f"GOLFQ_POOLS entry {item!r} is not NAME=COUNTxGPU (e.g. a100=1xA100)")
        pools[name.strip()] = (int(count), gpu)
    return pools


def _prices(text: str) -> dict[str, float]:
    prices: dict[str, float] = {}
    for item in _items(text):
        name, _, price = item.partition("=")
        try:
            prices[name.strip()] = float(price)
        except ValueError:
            raise SettingsError(f"GOLFQ_PRICES entry {item!r} is not GPU=USD_PER_HOUR (e.g. H100=2.49)") from None
    return prices


def _seconds(name: str, text: str, least: float = 1.0) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= least:
        raise SettingsError(f"{name}={text!r}: expected a number of seconds, at least {least:g}")
    return value


def _flag(text: str) -> bool:
    return text.strip().lower() not in ("0", "false", "no", "")


def from_env(env: Mapping[str, str]) -> Settings:
    """Settings from an environment mapping; SettingsError names the variable at fault."""
    fields: dict[str, object] = {}
    if value := env.get("GOLFQ_QUEUE"):
        fields["queue"] = value
    if value := env.get("GOLFQ_POOLS"):
        fields["extra_pools"] = _pools(value)
    if value := env.get("GOLFQ_PRICES"):
        fields["prices"] = _prices(value)
    if value := env.get("GOLFQ_DATA_DIR"):
        fields["data_dir"] = Path(value).expanduser()
    if value := env.get("GOLFQ_WORK_DIR"):
        fields["work_dir"] = Path(value).expanduser()
    if value := env.get("GOLFQ_DETECT_SECONDS"):
        fields["detect_seconds"] = _seconds("GOLFQ_DETECT_SECONDS", value)
    if value := env.get("GOLFQ_PROGRESS_SECONDS"):
        fields["progress_seconds"] = _seconds("GOLFQ_PROGRESS_SECONDS", value, least=0.1)
    if value := env.get("GOLFQ_CHECKPOINT_SECONDS"):
        fields["checkpoint_seconds"] = _seconds("GOLFQ_CHECKPOINT_SECONDS", value, least=0.0)
    if value := env.get("GOLFQ_DEBUG"):
        fields["debug"] = _flag(value)
    if value := env.get("GOLFQ_MODAL_APP"):
        fields["modal_app"] = value
    if value := env.get("GOLFQ_MODAL_ENV"):
        fields["modal_env"] = value
    if value := env.get("GOLFQ_MODAL_CONFIG"):
        fields["modal_config"] = Path(value).expanduser()
    if value := env.get("GOLFQ_MODAL_CONFIG_JSON"):
        fields["modal_config_json"] = value
    if value := env.get("GOLFQ_ARTIFACTS_MOUNT"):
        fields["artifacts_mount"] = Path(value)
    if value := env.get("GOLFQ_ENV_DIR"):
        fields["env_dir"] = Path(value).expanduser()
    if value := env.get("GOLFQ_ENV_FIND_LINKS"):
        fields["env_find_links"] = tuple(_items(value))
    if value := env.get("GOLFQ_ENV_PROVIDED"):
        fields["env_provided"] = value
    if value := env.get("GOLFQ_ENV_NO_INDEX"):
        fields["env_no_index"] = _flag(value)
    return Settings(**fields)  # type: ignore[arg-type]  # fields holds exactly Settings' names


_cache: tuple[tuple[tuple[str, str], ...], Settings] | None = None


def settings() -> Settings:
    """This process's settings, parsed again only when a GOLFQ_* variable changed."""
    global _cache
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(PREFIX)))
    if _cache is None or _cache[0] != key:
        _cache = (key, from_env(dict(key)))
    return _cache[1]
