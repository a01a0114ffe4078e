"""A record folder for `golfq submission`, as the challenge's `records/` entries are laid out.

From finished jobs of one configuration (one per seed) it writes `train_gpt.py`
(the user's script verbatim, or the built-in trainer bundled into one file),
`submission.json` (the mean score, per-seed results, byte counts, compliance),
each seed's train log and a README with the configuration and the command that
reproduces it. Byte counts are the ones the jobs reported (the file's size where
they report none); for the built-in trainer they count the bundled file, and a job
whose trainer bundled to another size than today's is refused, since its code is
not the file written here.
"""

from __future__ import annotations

import datetime
import json
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golfq.core.broker import Broker
from golfq.core.job import Job, JobState
from golfq.core.result import Result
from golfq.core.spec import BUILTIN, config_key
from golfq.ops import OpsError

SIZE_LIMIT_BYTES = 16_000_000
TRAIN_LIMIT_SECONDS = 600.0
SCRIPT_NAME = "train_gpt.py"


@dataclass(frozen=True)
class Submission:
    out: Path
    files: list[Path]  # everything written, train_gpt.py first
    document: dict[str, Any] = field(default_factory=dict)  # what submission.json holds


def _fail(message: str) -> OpsError:
    return OpsError(f"submission: {message}")


def _jobs(broker: Broker, job_ids: Sequence[str]) -> list[Job]:
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        raise _fail("give at least one job id")
    jobs = [broker.get(job_id) for job_id in ids]
    if missing := [job_id for job_id, job in zip(ids, jobs, strict=True) if job is None]:
        raise _fail(f"job(s) not found in {broker.url}: {', '.join(missing)}")
    found: list[Job] = [job for job in jobs if job is not None]
    for job in found:
        if job.state is not JobState.SUCCEEDED or job.result is None or job.result.val_bpb is None:
            raise _fail(f"job {job.id} is {job.state.value}, not finished with a score")
    if len({config_key(job.spec) for job in found}) > 1:
        keys = ", ".join(f"{job.id}={config_key(job.spec)}" for job in found)
        raise _fail(f"the jobs are different configurations (config keys {keys}); one submission is one configuration")
    if len({job.spec.seed for job in found}) < len(found):
        raise _fail("two jobs share a seed")
    return sorted(found, key=lambda job: job.spec.seed)


def _script(broker: Broker, jobs: list[Job], builtin_source: Callable[[], str]) -> bytes:
    trainer = jobs[0].spec.trainer
    if jobs[0].spec.is_code_folder:  # its bytes are a tar of the folder, not a train_gpt.py to copy
        raise _fail(f"{trainer} is a code folder; writing a folder back as a submission is not supported yet")
    if trainer != BUILTIN:
        try:
            return broker.get_script(trainer)
        except KeyError:
            raise _fail(f"the script {trainer} is not stored in {broker.url}") from None
    code = builtin_source().encode("utf-8")
    for job in jobs:
        reported = job.result.code_bytes if job.result else None
        if reported is not None and reported != len(code):
            raise _fail(f"job {job.id} ran a built-in trainer of {reported} code bytes; this golfq's is {len(code)} "
                        "bytes, so its code is not the file that would be written (re-run it with this version)")
    return code


def _log_path(job: Job, log_of: Callable[[Job], Path | None]) -> Path:
    path = log_of(job)
    if path is None:
        where = job.result.log_path if job.result is not None and job.result.log_path else "its run directory"
        raise _fail(f"job {job.id}: its log ({where}) is not on this machine; run this where the job ran")
    return path


def _seed_result(result: Result) -> dict[str, Any]:
    figures = {"val_bpb": result.val_bpb, "val_loss": result.val_loss, "artifact_bytes": result.artifact_bytes,
               "model_bytes": result.model_bytes, "code_bytes": result.code_bytes, "steps": result.steps,
               "step_avg_ms": round(result.step_ms, 2) if result.step_ms is not None else None,
               "train_time_s": result.train_seconds, "eval_time_s": result.eval_seconds,
               "score_source": result.score_source}
    return {key: value for key, value in figures.items() if value is not None}


def _hardware(results: list[Result]) -> str:
    first = results[0]
    return f"{first.gpu_count}x{first.gpu_name}" if first.gpu_count and first.gpu_name else "CPU"


def _torch_version(log: Path) -> str | None:
    with open(log, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("Running PyTorch "):
                return line.split()[2]
    return None


def _document(jobs: list[Job], code_bytes: int, logs: list[Path], *, name: str, author: str, github_id: str,
              blurb: str) -> dict[str, Any]:
    results = [job.result for job in jobs if job.result is not None]
    bpbs = [r.val_bpb for r in results if r.val_bpb is not None]
    losses = [r.val_loss for r in results if r.val_loss is not None]
    sizes = [r.artifact_bytes for r in results if r.artifact_bytes is not None]
    train = [r.train_seconds for r in results if r.train_seconds is not None]
    spec = jobs[0].spec
    finished = max(r.finished_at or 0.0 for r in results)
    under_size = len(sizes) == len(results) and max(sizes) <= SIZE_LIMIT_BYTES
    under_time = len(train) == len(results) and max(train) <= TRAIN_LIMIT_SECONDS
    record_track = under_size and under_time and _hardware(results).startswith("8x")
    document: dict[str, Any] = {
        "author": author, "github_id": github_id, "name": name, "blurb": blurb,
        "date": datetime.datetime.fromtimestamp(finished, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "track": "10min_16mb" if record_track else "non_record_16mb",
        "val_loss": round(statistics.fmean(losses), 8) if losses else None,
        "val_bpb": round(statistics.fmean(bpbs), 8),
        "bytes_total": max(sizes) if sizes else None,
        "bytes_code": code_bytes,
        "seeds": [job.spec.seed for job in jobs],
        "seed_results": {str(job.spec.seed): _seed_result(job.result) for job in jobs if job.result is not None},
        "hardware": _hardware(results),
    }
    if len(bpbs) > 1:
        document["val_bpb_std"] = round(statistics.stdev(bpbs), 8)
    if version := _torch_version(logs[0]):
        document["pytorch_version"] = version
    document["compliance"] = {"train_under_600s": under_time, "artifact_under_16mb": under_size,
                              "three_seeds": len(jobs) >= 3}
    document["golfq"] = {"config_key": config_key(spec), "jobs": [job.id for job in jobs], "trainer": spec.trainer,
                         "env": dict(sorted(spec.env.items())), "dataset": spec.data.dataset,
                         "tokenizer": spec.data.tokenizer, "train_seconds": spec.budget.train_seconds}
    return {key: value for key, value in document.items() if value is not None}


def _command(job: Job) -> str:
    spec = job.spec
    env = {"DATA_PATH": f"./data/datasets/{spec.data.dataset}",
           "TOKENIZER_PATH": f"./data/tokenizers/{spec.data.tokenizer}.model",
           "SEED": str(spec.seed), "MAX_WALLCLOCK_SECONDS": f"{spec.budget.train_seconds:g}",
           **dict(sorted(spec.env.items()))}
    gpus = job.result.gpu_count if job.result is not None and job.result.gpu_count else 0
    launcher = f"torchrun --standalone --nproc_per_node={gpus} {SCRIPT_NAME}" if gpus > 1 else f"python {SCRIPT_NAME}"
    return " \\\n  ".join([*(f"{k}={v}" for k, v in env.items()), launcher])


def _readme(jobs: list[Job], document: dict[str, Any], log_names: list[str]) -> str:
    spec = jobs[0].spec
    trainer = ("golfq's built-in trainer (the challenge's baseline architecture), bundled into this one file"
               if spec.trainer == BUILTIN else f"the script golfq ran ({spec.trainer}), verbatim")
    columns = ("val_bpb", "val_loss", "artifact_bytes", "steps", "step_avg_ms", "train_time_s")
    rows = ["| seed | val_bpb | val_loss | artifact bytes | steps | step_avg ms | train s | log |",
            "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for job, log_name in zip(jobs, log_names, strict=True):
        figures = document["seed_results"][str(job.spec.seed)]
        cells = [figures.get(key, "-") for key in columns]
        rows.append(f"| {job.spec.seed} | " + " | ".join(str(c) for c in cells) + f" | {log_name} |")
    settings = "\n".join(f"- `{k}={v}`" for k, v in sorted(spec.env.items())) or "- the trainer's defaults"
    std = f" (std {document['val_bpb_std']})" if "val_bpb_std" in document else ""
    return "\n".join([
        f"# {document['name']}", "",
        (f"val_bpb **{document['val_bpb']}**{std} over {len(jobs)} seed(s) on {document['hardware']}; "
         f"artifact {document.get('bytes_total', '-')} bytes (code {document['bytes_code']})."), "",
        f"`{SCRIPT_NAME}` is {trainer}. golfq job(s): {', '.join(job.id for job in jobs)}.", "",
        *rows, "",
        "## Configuration", "",
        (f"Data: `{spec.data.dataset}` with tokenizer `{spec.data.tokenizer}`; training budget "
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
    code = _script(broker, jobs, builtin_source)
    sources = [_log_path(job, log_of) for job in jobs]
    log_names = ["train.log"] if len(jobs) == 1 else [f"train_seed{job.spec.seed}.log" for job in jobs]
    reported = {job.result.code_bytes for job in jobs if job.result is not None}
    # The code size the runs all counted (a script may count its code compressed); the file's own size where they
    # differ or one counted none.
    counted = reported.pop() if len(reported) == 1 else None
    code_bytes = counted if counted is not None else len(code)
    title = name or jobs[0].spec.name or f"golfq {config_key(jobs[0].spec)}"
    document = _document(jobs, code_bytes, sources, name=title, author=author, github_id=github_id, blurb=blurb)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / SCRIPT_NAME, out / "submission.json", out / "README.md"]
    files[0].write_bytes(code)
    files[1].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    files[2].write_text(_readme(jobs, document, log_names), encoding="utf-8")
    for source, log_name in zip(sources, log_names, strict=True):
        shutil.copyfile(source, out / log_name)
        files.append(out / log_name)
    return Submission(out=out, files=files, document=document)
