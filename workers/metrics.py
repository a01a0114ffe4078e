"""Read a training log's metrics: the challenge's own final lines and golfq's JSON record.

Record submissions differ in their last lines (see tests/fixtures/logs/README.md),
so the score is taken from the *last labelled evaluation* (`LABEL [key:value ...]
val_loss:X val_bpb:Y`), preferring its `_exact` twin, and never from `diagnostic ...`
lines or a script's printed source code. A log with no labelled evaluation at all
is scored by its last step evaluation (`step:N/M val_loss:X val_bpb:Y`, before
quantization). `score_label` names the line the score came from. A
`GOLFQ_RESULT {json}` line, when present, wins field by field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable

import msgspec

RECORD_PREFIX = "GOLFQ_RESULT "

_NUM = r"([-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf))"
# `final_int8_zlib_roundtrip_exact val_loss:2.07 val_bpb:1.22 eval_time:1401ms` or
# `final_sliding_window_eval_exact stride:64 val_loss:1.96 val_bpb:1.16`: one bare label (no ':'
# or '/', so step lines and `ttt_sliding:done` never match), key:value fields, numeric values.
_SCORE = re.compile(rf"^\s*([A-Za-z][A-Za-z0-9_]*)(?:\s+[A-Za-z_]\w*:\S+)*?"
                    rf"\s+val_loss:\s*{_NUM}\s+val_bpb:\s*{_NUM}(.*)$")
# `step:13780/20000 val_loss:2.06 val_bpb:1.21 ...` or `4967/20000 val_loss: 2.76 val_bpb: 1.07`
_STEP_VAL = re.compile(rf"^\s*(?:step:\s*)?(\d+)/(\d+)\s+val_loss:\s*{_NUM}\s+val_bpb:\s*{_NUM}")
_STEP = re.compile(r"^\s*(?:step:\s*)?(\d+)/(\d+)\s+(?:train_loss|val_loss)\b")
_TRAIN_TIME = re.compile(r"\btrain_time:\s*([\d.]+)\s*(ms|s|m)\b")
_STEP_AVG = re.compile(r"\bstep_avg:\s*([\d.]+)\s*ms\b")
_STOPPING = re.compile(r"^\s*stopping_early:.*?train_time:\s*([\d.]+)\s*(ms|s|m)\b.*?step:\s*(\d+)\s*/\s*(\d+)")
_EVAL_TIME = re.compile(r"\beval_time:\s*([\d.]+)\s*(ms|s|m)\b")
# the records' whole timed evaluation (`total_eval_time:508.8s`): the eval time when the score line has none
_TOTAL_EVAL = re.compile(r"^\s*total_eval_time:\s*([\d.]+)\s*(ms|s|m)\b")
_TOTAL_SIZE = re.compile(r"^\s*Total submission size\s*(\S*?)\s*:\s*(\d+)\s+bytes")
_MODEL_SIZE = re.compile(r"^\s*Serialized model\s*(\S*?)\s*:\s*(\d+)\s+bytes")
_CODE_SIZE = re.compile(r"^\s*Code size\s*(\([a-z]+\))?\s*:\s*(\d+)\s+bytes")
_PEAK_MEM = re.compile(r"^\s*peak memory allocated:\s*([\d.]+)\s*MiB")
_WORLD_SIZE = re.compile(r"^\s*world_size:\s*(\d+)\b")
_BATCH_TOKENS = re.compile(r"^\s*train_batch_tokens:\s*(\d+)\b")
_UNIT_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0}


class _Record(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """golfq's one-line record; unknown keys are ignored so trainers may add their own."""

    val_bpb: float | None = None
    val_loss: float | None = None
    pre_quant_val_bpb: float | None = None
    pre_quant_val_loss: float | None = None
    artifact_bytes: int | None = None
    model_bytes: int | None = None
    code_bytes: int | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    steps: int | None = None
    tokens_seen: int | None = None
    step_ms: float | None = None
    peak_mem_mib: float | None = None
    gpu_name: str | None = None
    gpu_count: int | None = None
    artifact_path: str | None = None
    score_source: str | None = None  # the trainer's own name for its score line
    resumed: bool | None = None  # the run went on from a checkpoint (its training time is a sum over segments)


class Metrics(_Record, frozen=True, kw_only=True, omit_defaults=True):
    """What a log says about one attempt: the record's fields (every one optional) and where the score came from."""

    score_label: str | None = None  # the label of the line that gave val_bpb (`step:N/M` for a step line)

    def fields(self) -> dict:
        """The set fields, without the labels: ready to merge into a Result (see score_label)."""
        out = msgspec.structs.asdict(self)
        out.pop("score_label")
        out.pop("score_source")
        return {k: v for k, v in out.items() if v is not None}


def _seconds(value: str, unit: str) -> float:
    return float(value) * _UNIT_SECONDS[unit]


def _is_score_label(label: str) -> bool:
    return not label.lower().startswith("diagnostic")


def _pick_score(scores: list[tuple[str, float, float, float | None]]) -> tuple[str, float, float, float | None] | None:
    """The last labelled evaluation, or its `_exact` twin (more decimals) when the log has one."""
    if not scores:
        return None
    label, _, _, eval_seconds = last = scores[-1]
    base = label.removesuffix("_exact")
    twins = [s for s in scores if s[0] == base + "_exact"]
    plain = [s for s in scores if s[0] == base]
    chosen = twins[-1] if twins else last
    # The exact twin usually omits eval_time; its plain sibling carries it.
    timed = next((s[3] for s in reversed(plain + twins) if s[3] is not None), eval_seconds)
    return chosen[0], chosen[1], chosen[2], timed


def parse_record(line: str) -> dict:
    """The fields of one `GOLFQ_RESULT {json}` line; {} when it is not a valid record."""
    at = line.find(RECORD_PREFIX)
    if at < 0 or at > 40:  # allow a launcher's short prefix such as "[rank0]: "
        return {}
    payload = line[at + len(RECORD_PREFIX):].strip()
    try:
        raw = json.loads(payload)
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    fields = {}
    for key in _Record.__struct_fields__:
        if key not in raw or raw[key] is None:
            continue
        try:  # one bad value spoils only its own field
            value = msgspec.convert({key: raw[key]}, type=_Record)
        except msgspec.ValidationError:
            continue
        fields[key] = getattr(value, key)
    return fields


def parse_lines(lines: Iterable[str]) -> Metrics:
    scores: list[tuple[str, float, float, float | None]] = []
    found: dict = {}
    record: dict = {}
    total_sizes: list[tuple[str, int]] = []
    model_sizes: list[tuple[str, int]] = []
    code_sizes: dict[str, int] = {}
    batch_tokens = None
    for line in lines:
        if RECORD_PREFIX in line[:60]:
            record = parse_record(line) or record
            continue
        if m := _STEP_VAL.match(line):
            found["steps"] = int(m.group(1))
            found["pre_quant_val_loss"], found["pre_quant_val_bpb"] = float(m.group(3)), float(m.group(4))
            found["step_score"] = f"step:{m.group(1)}/{m.group(2)}"
        if m := _STEP.match(line):
            found["steps"] = int(m.group(1))
            if t := _TRAIN_TIME.search(line):
                found["train_seconds"] = _seconds(*t.groups())
            if a := _STEP_AVG.search(line):
                found["step_ms"] = float(a.group(1))
            continue
        if (m := _SCORE.match(line)) and _is_score_label(m.group(1)):
            e = _EVAL_TIME.search(m.group(4))
            scores.append((m.group(1), float(m.group(2)), float(m.group(3)), _seconds(*e.groups()) if e else None))
        elif m := _STOPPING.match(line):
            found["stopped_train_seconds"] = _seconds(m.group(1), m.group(2))
            found["stopped_steps"] = int(m.group(3))
        elif m := _TOTAL_EVAL.match(line):
            found["total_eval_seconds"] = _seconds(m.group(1), m.group(2))
        elif m := _TOTAL_SIZE.match(line):
            total_sizes.append((m.group(1), int(m.group(2))))
        elif m := _MODEL_SIZE.match(line):
            model_sizes.append((m.group(1), int(m.group(2))))
        elif m := _CODE_SIZE.match(line):
            code_sizes[m.group(1) or ""] = int(m.group(2))
        elif m := _PEAK_MEM.match(line):
            found["peak_mem_mib"] = float(m.group(1))
        elif m := _WORLD_SIZE.match(line):
            found["gpu_count"] = int(m.group(1))
        elif m := _BATCH_TOKENS.match(line):
            batch_tokens = int(m.group(1))
    return _assemble(found, scores, total_sizes, model_sizes, code_sizes, batch_tokens, record)


def _compressed_last(sizes: list[tuple[str, int]]) -> int | None:
    """`Total submission size int8+zlib: N` beats the untagged (uncompressed) line."""
    tagged = [n for tag, n in sizes if tag]
    return tagged[-1] if tagged else (sizes[-1][1] if sizes else None)


def _assemble(found, scores, total_sizes, model_sizes, code_sizes, batch_tokens, record) -> Metrics:
    out: dict = {}
    if score := _pick_score(scores):
        out["score_label"], out["val_loss"], out["val_bpb"], out["eval_seconds"] = score
    elif "step_score" in found:  # no final evaluation: the last step evaluation is all there is
        out["score_label"] = found["step_score"]
        out["val_loss"], out["val_bpb"] = found["pre_quant_val_loss"], found["pre_quant_val_bpb"]
    if out.get("eval_seconds") is None and "total_eval_seconds" in found:
        out["eval_seconds"] = found["total_eval_seconds"]
    for key in ("pre_quant_val_bpb", "pre_quant_val_loss", "peak_mem_mib", "gpu_count", "step_ms"):
        out[key] = found.get(key)
    # stopping_early names the wall-clock cap's exact stop; step lines are the fallback.
    out["train_seconds"] = found.get("stopped_train_seconds", found.get("train_seconds"))
    out["steps"] = found.get("stopped_steps", found.get("steps"))
    out["artifact_bytes"] = _compressed_last(total_sizes)
    out["model_bytes"] = _compressed_last(model_sizes)
    code = code_sizes.get("(compressed)", code_sizes.get("", code_sizes.get("(uncompressed)")))
    out["code_bytes"] = code
    if out["steps"] and batch_tokens:
        out["tokens_seen"] = out["steps"] * batch_tokens
    if out["step_ms"] is None and out["steps"] and out["train_seconds"]:
        out["step_ms"] = out["train_seconds"] * 1000.0 / out["steps"]
    if record:
        out.update(record)
        if "val_bpb" in record:
            out["score_label"] = record.get("score_source") or RECORD_PREFIX.strip()
    return Metrics(**{k: v for k, v in out.items() if v is not None})


def parse_log(text: str) -> Metrics:
    return parse_lines(text.splitlines())


def parse_log_file(path, errors: str = "replace") -> Metrics:
    with open(path, encoding="utf-8", errors=errors) as handle:
        return parse_lines(handle)


def usable_score(metrics: Metrics) -> bool:
    return metrics.val_bpb is not None and math.isfinite(metrics.val_bpb) and metrics.val_bpb > 0
