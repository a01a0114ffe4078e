"""A record folder for `golfq submission`, as the challenge's `records/` entries are laid out.

From finished jobs of one configuration (one per seed) it writes the code: `train_gpt.py`
(the user's script verbatim, or the built-in trainer bundled into one file), or for a
code-folder job every file of its pack as packed (its entry point, helpers, its own
requirements.txt and golfq.toml, small data files); `requirements.txt` where the code has
none (from the script's imports, torch as the runs logged it); `submission.json` in the
shape of the 2026-04 records (mean and std of the score and loss, pre-quantization scores,
artifact bytes mean and max, hardware as records name it, a date, the compliance block for
training, evaluation and artifact; the record track only when all three hold on 8xH100;
golfq's own block with what a launch line cannot say), each seed's train log and a README
with the rounded per-seed table and the launch line that reproduces it (the line `golfq
record import` reads back, so a code folder's submission imports to the job's own id).
Byte counts are the ones the jobs reported (the entry's size where they report none); for
the built-in trainer they count the bundled file, and a job whose trainer bundled to
another size than today's is refused, since its code is not the file written here.
"""

from __future__ import annotations

import datetime
import json
import shlex
import shutil
import statistics
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec

from golfq.core.broker import Broker
from golfq.core.codepack import PackedFile, is_paperwork, read_pack
from golfq.core.environment import REQUIREMENTS
from golfq.core.job import Job, JobState
from golfq.core.pareto import MAX_ARTIFACT_BYTES
from golfq.core.pools import known_pools
from golfq.core.result import Result
from golfq.core.spec import BUILTIN, CODE_PREFIX, DEFAULT_ENTRY, ExperimentSpec, config_key
from golfq.ops import OpsError
from golfq.ops.control import resolve_job_ids
from golfq.ops.requirements import pins_torch, requirements_text

TRAIN_LIMIT_SECONDS = 600.0
EVAL_LIMIT_SECONDS = 600.0
SCRIPT_NAME = DEFAULT_ENTRY  # what a record runs; a code folder may name another entry
# GPUs as the records name their machine (`8xH100 80GB SXM`): the challenge's H100s are the 80 GB SXM part
GPU_NAMES = {"H100": "H100 80GB SXM", "H200": "H200 141GB SXM", "A100": "A100 80GB SXM"}


@dataclass(frozen=True)
class Submission:
    out: Path
    files: list[Path]  # everything written, train_gpt.py first
    document: dict[str, Any] = field(default_factory=dict)  # what submission.json holds
    warnings: list[str] = field(default_factory=list)  # what a reviewer would ask for that is missing


def _fail(message: str) -> OpsError:
    return OpsError(f"submission: {message}")


def _jobs(broker: Broker, job_ids: Sequence[str]) -> list[Job]:
    if not job_ids:
        raise _fail("give at least one job id")
    try:
        ids = resolve_job_ids(broker, job_ids)
    except OpsError as error:
        raise _fail(str(error)) from None
    found = [job for job in map(broker.get, ids) if job is not None]
    if len(found) < len(ids):
        raise _fail(f"a job was purged from {broker.url} while being read; run it again")
    for job in found:
        if job.state is not JobState.SUCCEEDED or job.result is None or job.result.val_bpb is None:
            raise _fail(f"job {job.id} is {job.state.value}, not finished with a score")
    if len({config_key(job.spec) for job in found}) > 1:
        keys = ", ".join(f"{job.id}={config_key(job.spec)}" for job in found)
        raise _fail(f"the jobs are different configurations (config keys {keys}); one submission is one configuration")
    if len({job.spec.seed for job in found}) < len(found):
        raise _fail("two jobs share a seed")
    return sorted(found, key=lambda job: job.spec.seed)


@dataclass(frozen=True)
class _Code:
    """The code a submission writes: the files (entry first) and what reading them found."""

    files: list[PackedFile]
    entry: PackedFile
    warnings: list[str] = field(default_factory=list)

    def named(self, name: str) -> PackedFile | None:
        return next((packed for packed in self.files if packed.name == name), None)


def _stored(broker: Broker, trainer: str) -> bytes:
    try:
        return broker.get_script(trainer)
    except KeyError:
        what = "code folder" if trainer.startswith(CODE_PREFIX) else "script"
        raise _fail(f"the {what} {trainer} is not stored in {broker.url}") from None


def _folder(broker: Broker, job: Job) -> _Code:
    """Every file of the job's packed folder, as packed; the record paperwork of an older pack is left for the
    submission's own (it is rewritten, so the written folder packs to another id: said in a warning)."""
    spec = job.spec
    try:
        packed = read_pack(_stored(broker, spec.trainer))
    except (ValueError, tarfile.TarError) as error:
        raise _fail(f"the code folder {spec.trainer} does not unpack ({' '.join(str(error).split())})") from None
    paperwork = [p.name for p in packed if is_paperwork(p.name)]
    files = [p for p in packed if not is_paperwork(p.name)]
    entry = next((p for p in files if p.name == spec.entry), None)
    if entry is None:
        raise _fail(f"the code folder {spec.trainer} has no {spec.entry}, the entry job {job.id} names")
    warnings = [f"the code folder job {job.id} ran holds {', '.join(paperwork)}; the submission writes its own "
                "in their place, so the folder written here packs to another code id than the job ran"
                ] if paperwork else []
    return _Code([entry, *(p for p in files if p is not entry)], entry, warnings)


def _code(broker: Broker, jobs: list[Job], builtin_source: Callable[[], str]) -> _Code:
    trainer = jobs[0].spec.trainer
    if jobs[0].spec.is_code_folder:
        return _folder(broker, jobs[0])
    if trainer != BUILTIN:
        script = PackedFile(SCRIPT_NAME, _stored(broker, trainer))
        return _Code([script], script)
    code = builtin_source().encode("utf-8")
    for job in jobs:
        reported = job.result.code_bytes if job.result else None
        if reported is not None and reported != len(code):
            raise _fail(f"job {job.id} ran a built-in trainer of {reported} code bytes; this golfq's is {len(code)} "
                        "bytes, so its code is not the file that would be written (re-run it with this version)")
    bundled = PackedFile(SCRIPT_NAME, code)
    return _Code([bundled], bundled)


def _requirements(code: _Code, is_folder: bool, torch_version: str | None) -> tuple[PackedFile | None, list[str]]:
    """(requirements.txt to write besides the code's files, warnings): a folder's own is written as it is."""
    own = code.named(REQUIREMENTS)
    if own is None:
        python = [packed for packed in code.files if packed.name.endswith(".py")]
        local = {packed.name.split("/")[0].removesuffix(".py") for packed in python}
        text = requirements_text([packed.content for packed in python], torch_version, local)
        derived = PackedFile(REQUIREMENTS, text.encode("utf-8"))
        warnings = [f"the code folder has no {REQUIREMENTS}: wrote one from its imports, so the "
                    "folder written here runs in another environment (and packs to another code id) than the "
                    "job"] if is_folder else []
        return derived, warnings
    if torch_version and not pins_torch(own.content.decode("utf-8", errors="replace")):
        return None, [f"{REQUIREMENTS} (the folder's own, written as it is) does not pin torch; the runs "
                      f"logged torch {torch_version} (submission.json pytorch_version)"]
    return None, []


def _log_path(job: Job, log_of: Callable[[Job], Path | None]) -> Path:
    path = log_of(job)
    if path is None:
        where = job.result.log_path if job.result is not None and job.result.log_path else "its run directory"
        raise _fail(f"job {job.id}: its log ({where}) is not on this machine; run this where the job ran")
    return path


def _seed_result(result: Result) -> dict[str, Any]:
    figures = {"val_bpb": result.val_bpb, "val_loss": result.val_loss,
               "pre_quant_val_bpb": result.pre_quant_val_bpb, "pre_quant_val_loss": result.pre_quant_val_loss,
               "artifact_bytes": result.artifact_bytes, "model_bytes": result.model_bytes,
               "code_bytes": result.code_bytes, "steps": result.steps,
               "step_avg_ms": round(result.step_ms, 2) if result.step_ms is not None else None,
               "train_time_s": result.train_seconds, "eval_time_s": result.eval_seconds,
               "score_source": result.score_source}
    return {key: value for key, value in figures.items() if value is not None}


def _hardware(jobs: list[Job]) -> str:
    """`8xH100 80GB SXM` as records name it: the GPUs the run reported, else its pool's."""
    result, pool = jobs[0].result, known_pools().get(jobs[0].spec.pool)
    count = (result.gpu_count if result else 0) or (pool.gpus if pool else 0)
    name = (result.gpu_name if result else None) or (pool.gpu_type if pool else "")
    if not count or not name:
        return "CPU"
    short = next((key for key in GPU_NAMES if key in name.upper() and "PCIE" not in name.upper()), None)
    return f"{count}x{GPU_NAMES[short] if short else name}"


def _mean(values: list[float], digits: int = 8) -> float | None:
    return round(statistics.fmean(values), digits) if values else None


def _std(values: list[float], digits: int = 8) -> float | None:
    return round(statistics.stdev(values), digits) if len(values) > 1 else None


def _within(values: list[float | None], limit: float) -> bool:
    """Every run reported the figure and kept within the limit: a claim needs each run's evidence."""
    return bool(values) and all(v is not None and v <= limit for v in values)


def _torch_version(log: Path) -> str | None:
    with open(log, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("Running PyTorch "):
                return line.split()[2]
    return None


def _golfq_block(jobs: list[Job]) -> dict[str, Any]:
    """The spec's fields as golfq ran them: `record import` takes from here what no launch line says (the pool by
    name, the entry's folder, the hard kill)."""
    spec = jobs[0].spec
    block: dict[str, Any] = {
        "config_key": config_key(spec), "jobs": [job.id for job in jobs], "trainer": spec.trainer,
        "pool": spec.pool, "env": dict(sorted(spec.env.items())), "dataset": spec.data.dataset,
        "tokenizer": spec.data.tokenizer, "train_seconds": spec.budget.train_seconds}
    if spec.is_code_folder:
        block["entry"] = spec.entry
    if spec.budget.timeout_seconds is not None:
        block["timeout_seconds"] = spec.budget.timeout_seconds
    if spec.data.make is not None:
        block["data_make"] = msgspec.to_builtins(spec.data.make)
    return block


def _document(jobs: list[Job], code_bytes: int, logs: list[Path], *, name: str, author: str, github_id: str,
              blurb: str) -> dict[str, Any]:
    results = [job.result for job in jobs if job.result is not None]
    bpbs = [r.val_bpb for r in results if r.val_bpb is not None]
    losses = [r.val_loss for r in results if r.val_loss is not None]
    sizes = [r.artifact_bytes for r in results if r.artifact_bytes is not None]
    finished = max(r.finished_at or 0.0 for r in results)
    hardware = _hardware(jobs)
    compliance = {"train_under_600s": _within([r.train_seconds for r in results], TRAIN_LIMIT_SECONDS),
                  "eval_under_600s": _within([r.eval_seconds for r in results], EVAL_LIMIT_SECONDS),
                  "artifact_under_16mb": _within([r.artifact_bytes for r in results], MAX_ARTIFACT_BYTES),
                  "three_seeds": len(jobs) >= 3}
    # the record track: the 16 MB artifact, and both clocks on 8xH100; anything else is a non-record submission
    record_track = (compliance["train_under_600s"] and compliance["eval_under_600s"]
                    and compliance["artifact_under_16mb"] and hardware.startswith("8xH100"))
    document: dict[str, Any] = {
        "author": author, "github_id": github_id, "name": name, "blurb": blurb,
        "date": datetime.datetime.fromtimestamp(finished, datetime.UTC).strftime("%Y-%m-%d"),
        "track": "10min_16mb" if record_track else "non_record_16mb",
        "val_loss": _mean(losses),
        "val_bpb": _mean(bpbs),
        "val_loss_std": _std(losses),
        "val_bpb_std": _std(bpbs),
        "pre_quant_val_loss": _mean([r.pre_quant_val_loss for r in results if r.pre_quant_val_loss is not None]),
        "pre_quant_val_bpb": _mean([r.pre_quant_val_bpb for r in results if r.pre_quant_val_bpb is not None]),
        "bytes_total": max(sizes) if sizes else None,
        "bytes_code": code_bytes,
        "artifact_bytes_mean": round(statistics.fmean(sizes)) if sizes else None,
        "artifact_bytes_max": max(sizes) if sizes else None,
        "seeds": [job.spec.seed for job in jobs],
        "seed_results": {str(job.spec.seed): _seed_result(job.result) for job in jobs if job.result is not None},
        "hardware": hardware,
    }
    if version := _torch_version(logs[0]):
        document["pytorch_version"] = version
    document["compliance"] = compliance
    document["golfq"] = _golfq_block(jobs)
    return {key: value for key, value in document.items() if value is not None}


def _seconds(value: float) -> str:
    """Seconds as a launch line writes them: `600`, or every digit the float has (`:g` would round to six)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _command(job: Job) -> str:
    """The launch line `golfq record import` reads back: the data, seed, budget and env as variables, the entry."""
    spec = job.spec
    env = {"DATA_PATH": f"./data/datasets/{spec.data.dataset}",
           "TOKENIZER_PATH": f"./data/tokenizers/{spec.data.tokenizer}.model",
           "SEED": str(spec.seed), "MAX_WALLCLOCK_SECONDS": _seconds(spec.budget.train_seconds),
           **dict(sorted(spec.env.items()))}
    pool = known_pools().get(spec.pool)
    gpus = pool.gpus if pool else (job.result.gpu_count if job.result is not None else 0)
    entry = shlex.quote(spec.entry if spec.is_code_folder else SCRIPT_NAME)
    launcher = f"torchrun --standalone --nproc_per_node={gpus} {entry}" if gpus > 1 else f"python {entry}"
    return " \\\n  ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), launcher])


# README table columns: the seed_results key and how records print it (5 decimals, thousands, one decimal)
_TABLE = (("val_bpb", ".5f"), ("val_loss", ".5f"), ("pre_quant_val_bpb", ".5f"), ("artifact_bytes", ","),
          ("steps", ","), ("step_avg_ms", ".1f"), ("train_time_s", ".1f"), ("eval_time_s", ".1f"))


def _cell(value: Any, shape: str) -> str:
    return "-" if value is None else format(round(value) if shape == "," else value, shape)


def _code_sentence(spec: ExperimentSpec, code: _Code) -> str:
    if spec.trainer == BUILTIN:
        return (f"`{SCRIPT_NAME}` is golfq's built-in trainer (the challenge's baseline architecture), bundled into "
                "this one file.")
    if not spec.is_code_folder:
        return f"`{SCRIPT_NAME}` is the script golfq ran ({spec.trainer}), verbatim."
    return (f"The code is the folder golfq ran ({spec.trainer}), file for file: "
            + ", ".join(f"`{packed.name}`" for packed in code.files) + f"; `{code.entry.name}` is its entry point.")


def _made(spec: ExperimentSpec) -> str:
    make = spec.data.make
    if make is None:
        return ""
    return (f", made by `{make.command}` in the code folder"
            + "".join(f", {k}={v}" for k, v in sorted(make.inputs.items()))
            + f" ({', '.join(f'{k}: {v}' for k, v in sorted(make.paths.items()))})")


def _readme(jobs: list[Job], document: dict[str, Any], log_names: list[str], code: _Code) -> str:
    spec = jobs[0].spec
    rows = ["| seed | val_bpb | val_loss | pre-quant val_bpb | artifact bytes | steps | ms/step | train s | eval s "
            "| log |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for job, log_name in zip(jobs, log_names, strict=True):
        figures = document["seed_results"][str(job.spec.seed)]
        cells = [_cell(figures.get(key), shape) for key, shape in _TABLE]
        rows.append(f"| {job.spec.seed} | " + " | ".join(cells) + f" | {log_name} |")
    mean = {key: document.get(key) for key in ("val_bpb", "val_loss", "pre_quant_val_bpb")}
    mean["artifact_bytes"] = document.get("artifact_bytes_mean")
    if len(jobs) > 1:
        rows.append("| **mean** | " + " | ".join(_cell(mean.get(key), shape) for key, shape in _TABLE) + " | |")
    settings = "\n".join(f"- `{k}={v}`" for k, v in sorted(spec.env.items())) or "- the trainer's defaults"
    std = f" (std {document['val_bpb_std']:.5f})" if "val_bpb_std" in document else ""
    return "\n".join([
        f"# {document['name']}", "",
        (f"val_bpb **{document['val_bpb']:.5f}**{std} over {len(jobs)} seed(s) on {document['hardware']}; "
         f"artifact {_cell(document.get('bytes_total'), ',')} bytes (code {document['bytes_code']:,})."), "",
        f"{_code_sentence(spec, code)} golfq job(s): {', '.join(job.id for job in jobs)}.", "",
        *rows, "",
        "## Configuration", "",
        (f"Data: `{spec.data.dataset}` with tokenizer `{spec.data.tokenizer}`{_made(spec)}; training budget "
         f"{spec.budget.train_seconds:g} s. Hyperparameters other than the defaults:"), "",
        settings, "",
        "## Reproduce (first seed)", "",
        "```", _command(jobs[0]), "```", "",
    ])


def write_submission(broker: Broker, job_ids: Sequence[str], out: Path, *, log_of: Callable[[Job], Path | None],
                     builtin_source: Callable[[], str], name: str = "", author: str = "", github_id: str = "",
                     blurb: str = "") -> Submission:
    """Write a record folder for these jobs into out (new or empty); return what was written.

    `log_of` finds a job's train log on this machine; `builtin_source` is the built-in trainer as
    one file (the caller's: ops imports no training code)."""
    jobs = _jobs(broker, job_ids)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise _fail(f"{out} exists and is not an empty directory")
    code = _code(broker, jobs, builtin_source)
    sources = [_log_path(job, log_of) for job in jobs]
    log_names = ["train.log"] if len(jobs) == 1 else [f"train_seed{job.spec.seed}.log" for job in jobs]
    reported = {job.result.code_bytes for job in jobs if job.result is not None}
    # The code size the runs all counted (a script may count its code compressed); the entry's own size where they
    # differ or one counted none.
    counted = reported.pop() if len(reported) == 1 else None
    code_bytes = counted if counted is not None else len(code.entry.content)
    title = name or jobs[0].spec.name or f"golfq {config_key(jobs[0].spec)}"
    document = _document(jobs, code_bytes, sources, name=title, author=author, github_id=github_id, blurb=blurb)
    derived, requirement_warnings = _requirements(code, jobs[0].spec.is_code_folder, document.get("pytorch_version"))
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for packed in [*code.files, *([derived] if derived is not None else [])]:
        path = out.joinpath(*PurePosixPath(packed.name).parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(packed.content)
        path.chmod(0o755 if packed.executable else 0o644)
        files.append(path)
    (out / "submission.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(_readme(jobs, document, log_names, code), encoding="utf-8")
    files[1:1] = [out / "submission.json", out / "README.md"]
    for source, log_name in zip(sources, log_names, strict=True):
        shutil.copyfile(source, out / log_name)
        files.append(out / log_name)
    warnings = [f"submission.json has no {key}: give --{key.replace('_', '-')} (records name their author)"
                for key in ("author", "github_id") if not document.get(key)]
    return Submission(out=out, files=files, document=document, warnings=warnings + code.warnings + requirement_warnings)
