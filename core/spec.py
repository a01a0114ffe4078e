"""ExperimentSpec: what to train, where, with which budget; and its content-derived id.

A spec is refused at the door with one line that names the field, so nothing malformed
ever reaches a queue. The id hashes only what changes the outcome, so submitting the
same experiment twice (under another name, tag or priority) finds the existing job.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from golfq.core.errors import GolfqError
from golfq.core.pools import known_pools
from golfq.core.stopping import StopRule

MAX_SCRIPT_BYTES = 1 << 20
# A packed code folder: why 4 MiB is in docs/architecture.md ("Code folders, environments and made data").
MAX_CODE_BYTES = 4 << 20
CODE_PREFIX = "code:"
DEFAULT_ENTRY = "train_gpt.py"
SPEC_VERSION = 1
BUILTIN = "builtin"

_ENV_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SCRIPT_REF = re.compile(r"^(code:)?sha256:[0-9a-f]{64}$")
_ENTRY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*\.py$")
_SPEC_ID = re.compile(r"^[a-z2-7]{16}$")
# golfq sets these itself from typed fields; allowing them in env would make two
# specs with the same outcome hash differently, or silently override the budget.
RESERVED_ENV = {
    "SEED": "seed",
    "MAX_WALLCLOCK_SECONDS": "budget.train_seconds",
    "DATA_PATH": "data.dataset",
    "TOKENIZER_PATH": "data.tokenizer",
    "RANK": None,
    "WORLD_SIZE": None,
    "LOCAL_RANK": None,
    "CUDA_VISIBLE_DEVICES": None,
    "CHECKPOINT_DIR": None,  # the job's checkpoint folder (golfq.workers.checkpoints)
    "RESUME": None,
}

# The default hard kill: training, then room for a full evaluation under the track's rule, then the
# phases a record runs outside both clocks (start-up, compile warm-ups, quantization and compression,
# diagnostic evaluations). Derived from the record logs' own phase timings in docs/architecture.md.
EVAL_ROOM_SECONDS = 600.0
RUN_OVERHEAD_SECONDS = 600.0

NonNegInt = Annotated[int, msgspec.Meta(ge=0, le=1000)]
Positive = Annotated[float, msgspec.Meta(gt=0, le=7 * 24 * 3600)]
ShortText = Annotated[str, msgspec.Meta(max_length=200)]


class SpecError(GolfqError, ValueError):
    """A spec was refused; str(error) is one line naming the field."""


class Retries(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How many times each failure class is retried before the job is given up."""

    infra: NonNegInt = 3
    timeout: NonNegInt = 1
    user: NonNegInt = 0


class Budget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    train_seconds: Positive = 600.0  # becomes MAX_WALLCLOCK_SECONDS
    timeout_seconds: Positive | None = None  # hard kill; default: training + EVAL_ROOM + RUN_OVERHEAD
    retries: Retries = Retries()

    @property
    def hard_timeout(self) -> float:
        if self.timeout_seconds is not None:
            return self.timeout_seconds
        return self.train_seconds + EVAL_ROOM_SECONDS + RUN_OVERHEAD_SECONDS


class MadeData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Data a command of the code folder makes, once per (command, inputs, code) under the data root.

    The command runs in the code folder (and its environment) with GOLFQ_DATA_OUT naming the folder
    to fill, GOLFQ_DATA_ROOT the data root, and `inputs` as environment variables; `paths` maps the
    variables the training script reads (DATA_PATH, TOKENIZER_PATH, ...) to paths inside that folder."""

    command: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    inputs: dict[str, str] = {}
    paths: dict[str, str] = {}

    def __post_init__(self) -> None:
        for field, table in (("inputs", self.inputs), ("paths", self.paths)):
            for key, value in table.items():
                if not _ENV_KEY.match(key):
                    raise ValueError(f"data.make.{field}.{key}: keys must be UPPER_SNAKE_CASE")
                if not isinstance(value, str) or "\x00" in value or len(value) > 4096:
                    raise ValueError(f"data.make.{field}.{key}: expected a string of at most 4096 characters")
        for key, value in self.paths.items():
            parts = value.split("/")
            if value.startswith("/") or ".." in parts or not value:
                raise ValueError(f"data.make.paths.{key}: {value!r} is not a relative path inside the output")
            if key not in ("DATA_PATH", "TOKENIZER_PATH") and key in RESERVED_ENV:
                raise ValueError(f"data.make.paths.{key}: reserved, golfq sets it for each process")

    def key(self, code: str) -> str:
        """The output's name under made/: a hash of the command, its inputs and the code it runs from."""
        body = msgspec.json.encode({"command": self.command, "inputs": self.inputs, "code": code}, order="sorted")
        return hashlib.sha256(body).hexdigest()[:32]


class DataRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Names under the data root: datasets/<dataset>/ and tokenizers/<tokenizer>.model, or data a command makes."""

    dataset: str = "fineweb10B_sp1024"
    tokenizer: str = "fineweb_1024_bpe"
    make: MadeData | None = None

    def paths(self, root: Path) -> tuple[Path, Path]:
        """(DATA_PATH, TOKENIZER_PATH) under a data root, in the challenge's layout."""
        return root / "datasets" / self.dataset, root / "tokenizers" / f"{self.tokenizer}.model"

    def __post_init__(self) -> None:
        for field in ("dataset", "tokenizer"):
            value = getattr(self, field)
            if not _NAME.match(value) or len(value) > 100:
                raise ValueError(f"data.{field}: {value!r} is not a plain name ([A-Za-z0-9_.-])")


class Promote(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Queue this config again in a bigger pool, with more seeds, once it is in the top K of its track."""

    to: str
    top: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    seeds: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    min_seeds: Annotated[int, msgspec.Meta(ge=1, le=20)] = 1  # seeds the config needs before it can rank

    def __post_init__(self) -> None:
        if not _NAME.match(self.to) or len(self.to) > 64:
            raise ValueError(f"promote.to: {self.to!r} is not a plain name ([A-Za-z0-9_.-])")


class ExperimentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: ShortText = ""
    pool: str = "cpu"
    trainer: str = BUILTIN  # "builtin", "sha256:<hex>" of a script or "code:sha256:<hex>" of a packed folder
    entry: str = DEFAULT_ENTRY  # the script a code folder runs
    env: dict[str, str] = {}
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 1337
    data: DataRef = DataRef()
    budget: Budget = Budget()
    priority: Annotated[int, msgspec.Meta(ge=-1000, le=1000)] = 0
    tags: tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=64)], ...] = ()
    parent: str | None = None
    created_by: ShortText = ""
    stop: StopRule | None = None  # early stopping (golfq.core.stopping); not part of the id
    promote: Promote | None = None  # an automatic promotion rule (golfq.core.promotion); not part of the id

    def __post_init__(self) -> None:
        # Only the pool's form here: which pools exist is the submitter's setting (check_pool), and a
        # stored job must decode in any shell, whatever pools it knows.
        if not _NAME.match(self.pool) or len(self.pool) > 64:
            raise ValueError(f"pool: {self.pool!r} is not a plain name ([A-Za-z0-9_.-])")
        if self.trainer != BUILTIN and not _SCRIPT_REF.match(self.trainer):
            raise ValueError(f"trainer: {self.trainer!r} is neither 'builtin', 'sha256:<64 hex>' nor "
                             f"'code:sha256:<64 hex>'")
        if not _ENTRY.match(self.entry) or ".." in self.entry.split("/") or len(self.entry) > 200:
            raise ValueError(f"entry: {self.entry!r} is not a relative path to a .py file inside the code folder")
        if self.entry != DEFAULT_ENTRY and not self.is_code_folder:
            raise ValueError("entry: only a code folder (code = DIR) names its entry point")
        if self.data.make is not None and not self.is_code_folder:
            raise ValueError("data.make: a data command runs from a code folder (code = DIR)")
        for key, value in self.env.items():
            if not _ENV_KEY.match(key):
                named = key if key.isprintable() and key.strip() == key and key else repr(key)
                raise ValueError(f"env.{named}: keys must be UPPER_SNAKE_CASE")
            if not isinstance(value, str):
                raise ValueError(f"env.{key}: values must be strings, got {type(value).__name__}")
            if "\x00" in value:
                raise ValueError(f"env.{key}: value contains a NUL byte, which no process environment can hold")
            if len(value) > 4096:
                raise ValueError(f"env.{key}: value longer than 4096 characters")
            if key in RESERVED_ENV:
                instead = RESERVED_ENV[key]
                hint = f"set {instead} instead" if instead else "golfq sets it for each process"
                raise ValueError(f"env.{key}: reserved, {hint}")
        if len(self.env) > 256:
            raise ValueError("env: more than 256 variables")
        if self.parent is not None and not _SPEC_ID.match(self.parent):
            raise ValueError(f"parent: {self.parent!r} is not a spec id")
        if len(self.tags) > 32:
            raise ValueError("tags: more than 32 tags")

    @property
    def id(self) -> str:
        return spec_id(self)

    @property
    def script_sha256(self) -> str | None:
        return None if self.trainer == BUILTIN else blob_ref(self.trainer).removeprefix("sha256:")

    @property
    def is_code_folder(self) -> bool:
        return self.trainer.startswith(CODE_PREFIX)


def check_pool(spec: ExperimentSpec, pools: Mapping[str, object] | None = None) -> ExperimentSpec:
    """The spec, if its pool is one this process knows (built in or GOLFQ_POOLS); else SpecError.

    Checked when a spec is submitted, never when a stored job is read. A batch passes
    known_pools() once."""
    pools = known_pools() if pools is None else pools
    for field, pool in (("pool", spec.pool), ("promote.to", spec.promote.to if spec.promote else None)):
        if pool is not None and pool not in pools:
            raise SpecError(f"{field}: unknown pool {pool!r} (known: {', '.join(sorted(pools))}; add one with "
                            f"GOLFQ_POOLS=NAME=COUNTxGPU)")
    return spec


def canonical_bytes(spec: ExperimentSpec) -> bytes:
    """The fields that change the outcome, encoded with sorted keys."""
    outcome: dict[str, Any] = {
        "v": SPEC_VERSION,
        "pool": spec.pool,
        "trainer": spec.trainer,
        "env": spec.env,
        "seed": spec.seed,
        "data": {"dataset": spec.data.dataset, "tokenizer": spec.data.tokenizer},
        "budget": {"train_seconds": float(spec.budget.train_seconds),
                   "timeout_seconds": float(spec.budget.hard_timeout)},
    }
    # Added only when used, so the ids of builtin and one-script specs stay what they were.
    if spec.is_code_folder:
        outcome["entry"] = spec.entry
    if spec.data.make is not None:
        outcome["data"]["make"] = spec.data.make
    return msgspec.json.encode(outcome, order="sorted")


def spec_id(spec: ExperimentSpec) -> str:
    digest = hashlib.sha256(canonical_bytes(spec)).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def config_key(spec: ExperimentSpec) -> str:
    """Like the id but blind to the seed: repeats of one config share it."""
    return spec_id(msgspec.structs.replace(spec, seed=0))


def script_ref(content: bytes, limit: int = MAX_SCRIPT_BYTES, what: str = "script") -> str:
    """The blob store's key for a script (or, with limit=MAX_CODE_BYTES, a packed code folder)."""
    if len(content) > limit:
        raise SpecError(f"{what}: {len(content):,} bytes is over the {limit:,}-byte limit")
    return "sha256:" + hashlib.sha256(content).hexdigest()


def blob_ref(trainer: str) -> str:
    """The stored blob a trainer names: a packed folder is stored like a script, by its sha256."""
    return trainer.removeprefix(CODE_PREFIX)


def stored_ref(content: bytes) -> str:
    """What a backend checks before it stores a blob: the larger of the two caps."""
    return script_ref(content, MAX_CODE_BYTES, "code")


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    # msgspec says "Expected `int`, got `str` - at `$.seed`"; lead with the field instead.
    match = re.match(r"^(.*) - at `\$\.?(.*)`$", text)
    message, path = match.groups() if match else (text, "")
    unknown = re.match(r"^Object contains unknown field `(.*)`$", message)
    if unknown:  # name the offending key itself, as a dotted path
        key = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        lowercase = not path and unknown.group(1).upper() != unknown.group(1)
        hint = " (hyperparameters are UPPER_CASE env keys)" if lowercase else ""
        return f"{key}: unknown field{hint}"
    if re.match(r"^[\w.\[\]'\\]+: ", message):  # our own checks already name the field (a repr'd key too)
        return message
    return f"{path or 'spec'}: {message}"


def parse_spec(obj: Any) -> ExperimentSpec:
    """Build a spec from a dict, JSON bytes/str or an ExperimentSpec; raise SpecError."""
    try:
        if isinstance(obj, ExperimentSpec):
            return obj
        if isinstance(obj, (bytes, bytearray, memoryview, str)):
            return msgspec.json.decode(obj, type=ExperimentSpec)
        if not isinstance(obj, dict):
            raise SpecError(f"spec: expected a table/object, got {type(obj).__name__}")
        return msgspec.convert(obj, type=ExperimentSpec)
    except SpecError:
        raise
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, TypeError) as error:
        raise SpecError(_one_line(error)) from None
