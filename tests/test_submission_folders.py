"""A code folder in, a record folder out: `golfq submission` of a code-folder job writes the folder's own
files back, byte for byte, beside its paperwork, and `golfq record import` of what it wrote gives the job's
own spec again (the same id, so submitting it finds the job)."""

from __future__ import annotations

import io
import json
import stat
import tarfile
from pathlib import Path

import pytest

from golfq.core.result import Result
from golfq.core.spec import CODE_PREFIX, parse_spec
from golfq.ops.recordfile import render_toml
from golfq.ops.records import import_record
from golfq.ops.submission import write_submission
from golfq.producer.codefolder import pack_folder
from golfq.producer.specfile import prepare, read_documents
from tests.envs_helpers import PACKAGE, code_folder, wheels  # noqa: F401 (fixture)
from tests.golfq_helpers import broker, cli  # noqa: F401 (fixtures)

# A record-like stand-in: its helper, its own requirement, the torch line records log, the challenge's final lines.
STAND_IN = f"""\
import os
import {PACKAGE}
import helper
print("Running PyTorch 2.9.1+cu128")
print("settings", os.environ["LQER_RANK"], os.environ["NOTE"])
bpb = helper.BPB + int(os.environ["SEED"]) / 1000
print(f"final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:{{bpb}}")
print("Total submission size int8+zlib: 4096 bytes")
"""
DECLARATION = "# what pip cannot install\n[environment]\nbuild = [\"python -c 'print(42)'\"]\n"


def _folder_files(folder: Path) -> dict[str, tuple[bytes, bool]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), bool(p.stat().st_mode & stat.S_IXUSR))
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _imported_spec_id(folder: Path, spec_file: Path) -> tuple[str, str]:
    """(spec id, trainer) of the spec file `record import` writes for a folder, read as `golfq submit` reads it."""
    spec_file.write_text(render_toml(import_record(folder, spec_file)))
    return _spec_file_id(spec_file)


def _spec_file_id(spec_file: Path) -> tuple[str, str]:
    [doc], base = read_documents(str(spec_file))
    spec = prepare(doc, base=base).spec
    return spec.id, spec.trainer


def test_a_code_folder_job_is_written_back_file_for_file_and_imports_to_its_own_id(cli, tmp_path, wheels):
    folder = code_folder(tmp_path / "specs" / "rec", script=STAND_IN,
                         files={"golfq.toml": DECLARATION, "tokenizers/vocab.txt": "a b c\n"})
    (folder / "prepare.sh").write_text("#!/bin/sh\necho made\n")
    (folder / "prepare.sh").chmod(0o755)
    (tmp_path / "specs" / "run.toml").write_text(
        'code = "rec"\npool = "cpu"\nseed = 7\nname = "stand-in"\n[budget]\ntrain_seconds = 123.25\n'
        'timeout_seconds = 900\n[env]\nLQER_RANK = "4"\nNOTE = "two words"\n')
    code, out, err = cli("submit", str(tmp_path / "specs" / "run.toml"), "--json")
    assert code == 0, err
    job_id = json.loads(out)["id"]
    assert cli("worker", "--pool", "cpu", "--burst", "--heartbeat-seconds", "0.5")[0] == 0
    job = json.loads(cli("status", job_id, "--json")[1])
    assert job["state"] == "succeeded", job
    assert job["result"]["environment"]  # it ran in the folder's own environment

    target = tmp_path / "out" / "2026-05-01_StandIn"
    code, out, err = cli("submission", job_id, "--out", str(target), "--author", "Ada", "--github-id", "ada")
    assert code == 0, err
    # Every file of the folder, byte for byte and with its executable bit; its own requirements.txt as it is.
    original, written = _folder_files(folder), _folder_files(target)
    assert {name: written[name] for name in original} == original
    assert set(written) - set(original) == {"README.md", "submission.json", "train.log"}
    assert err.strip().splitlines() == [  # the folder's requirements.txt is kept, and says nothing of torch
        "golfq: warning: requirements.txt (the folder's own, written as it is) does not pin torch; the runs logged "
        "torch 2.9.1+cu128 (submission.json pytorch_version)"]
    assert "settings 4 two words" in (target / "train.log").read_text()
    document = json.loads((target / "submission.json").read_text())
    assert document["golfq"]["trainer"] == job["spec"]["trainer"] and document["pytorch_version"] == "2.9.1+cu128"
    readme = (target / "README.md").read_text()
    assert "`helper.py`" in readme and "NOTE='two words'" in readme and "python train_gpt.py" in readme

    # The round trip: the written folder imports to the job's own spec, and submitting it finds the job.
    code, out, err = cli("record", "import", str(target), "--out", str(tmp_path / "again.toml"))
    assert code == 0 and (target / "golfq.toml").read_text() == DECLARATION, err
    assert _spec_file_id(tmp_path / "again.toml") == (job_id, job["spec"]["trainer"])
    code, out, err = cli("submit", str(tmp_path / "again.toml"), "--json")
    assert code == 0 and json.loads(out)["id"] == job_id, err
    assert len(json.loads(cli("status", "--json")[1])["jobs"]) == 1


def _finished_folder_job(broker, tmp_path, blob: bytes, *, entry="train_gpt.py", pool="cpu", seed=3,
                         env=None, data=None, **budget) -> str:
    """A code-folder job completed as a worker would: its pack stored, a log beside it."""
    ref = broker.put_script(blob)
    spec = parse_spec({"pool": pool, "trainer": CODE_PREFIX + ref, "entry": entry, "seed": seed, "env": env or {},
                       "budget": {"train_seconds": 600.0, **budget}, "data": data or {}})
    broker.submit([spec])
    lease = broker.claim(pool, "w", lease_seconds=60)
    log = tmp_path / f"{spec.id}.log"
    log.write_text("Running PyTorch 2.9.1+cu128\nfinal_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.2\n")
    broker.complete(lease, Result(spec_id=spec.id, attempt=lease.attempt, status="succeeded", val_bpb=1.2,
                                  val_loss=2.0, artifact_bytes=4096, train_seconds=600.0, eval_seconds=300.0,
                                  gpu_name="H100" if pool != "cpu" else None, finished_at=1777248000.0,
                                  log_path=str(log)))
    return spec.id


def _write(broker, tmp_path, job_ids, out="out"):
    logs = {job_id: tmp_path / f"{job_id}.log" for job_id in job_ids}
    return write_submission(broker, job_ids, tmp_path / out, log_of=lambda job: logs[job.id],
                            builtin_source=lambda: "unused", author="Ada", github_id="ada")


def test_an_entry_in_a_subfolder_on_eight_gpus_with_made_data_round_trips(broker, tmp_path):
    folder = code_folder(tmp_path / "rec", files={"src/run.py": "import helper\n", "src/__init__.py": ""})
    for paperwork in ("README.md", "submission.json", "train_seed1.log"):  # a record's own: not code, not packed
        (folder / paperwork).write_text("about the runs\n")
    packed = pack_folder(folder)
    assert not {"README.md", "submission.json", "train_seed1.log"} & set(packed.files)
    job_id = _finished_folder_job(broker, tmp_path, packed.data, entry="src/run.py", pool="h100x8", seed=42,
                                  env={"TTT_LORA_RANK": "80", "PATTERN": "a$b 'c'", "RUN_ID": "mine"},
                                  timeout_seconds=2400.0,
                                  data={"dataset": "fineweb10B_sp8192", "tokenizer": "fineweb_8192_bpe",
                                        "make": {"command": "python3 prepare.py --out \"$GOLFQ_DATA_OUT\"",
                                                 "inputs": {"DOCS": "1000"},
                                                 "paths": {"DATA_PATH": "shards", "TOKENIZER_PATH": "tok.model"}}})
    written = _write(broker, tmp_path, [job_id])
    assert written.files[0] == written.out / "src" / "run.py"
    assert "torchrun --standalone --nproc_per_node=8 src/run.py" in (written.out / "README.md").read_text()
    assert "made by `python3 prepare.py" in (written.out / "README.md").read_text()
    assert _imported_spec_id(written.out, tmp_path / "again.toml") == (job_id, packed.trainer)


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    return buffer.getvalue()


def test_an_older_pack_with_paperwork_and_a_folder_without_requirements_are_written_and_said(broker, tmp_path):
    blob = _tar({"README.md": b"the record's own\n", "train_gpt.py": b"import numpy\nimport torch\nimport helper\n",
                 "helper.py": b"import brotli\nfrom lib.ops import f\n", "lib/ops.py": b"import os\n"})
    job_id = _finished_folder_job(broker, tmp_path, blob)
    written = _write(broker, tmp_path, [job_id])
    assert (written.out / "lib" / "ops.py").read_bytes() == b"import os\n"
    # from every module's imports, the folder's own (helper, lib) left out
    assert (written.out / "requirements.txt").read_text().splitlines()[1:] == ["torch==2.9.1+cu128", "numpy", "brotli"]
    assert [w.split(";")[0].split(":")[0] for w in written.warnings] == [
        f"the code folder job {job_id} ran holds README.md", "the code folder has no requirements.txt"]


@pytest.mark.parametrize("case", ["not a tar", "no entry", "not stored", "mixed"])
def test_what_cannot_be_written_is_refused_in_one_line(cli, broker, tmp_path, case):
    folder_job = _finished_folder_job(broker, tmp_path, _tar({"train_gpt.py": b"print(1)\n"}), seed=1)
    if case == "not a tar":
        ids, message = [_finished_folder_job(broker, tmp_path, b"plain bytes, no tar\n")], "does not unpack"
    elif case == "no entry":
        ids = [_finished_folder_job(broker, tmp_path, _tar({"helper.py": b""}), entry="run.py")]
        message = "has no run.py, the entry job"
    elif case == "not stored":
        spec = parse_spec({"pool": "cpu", "trainer": CODE_PREFIX + "sha256:" + "0" * 64})
        lease = (broker.submit([spec]), broker.claim("cpu", "w", lease_seconds=60))[1]
        broker.complete(lease, Result(spec_id=spec.id, attempt=lease.attempt, status="succeeded", val_bpb=1.2))
        ids, message = [spec.id], "is not stored in"
    else:  # a code folder and a script: two configurations
        script = broker.put_script(b"print(1)\n")
        spec = parse_spec({"pool": "cpu", "trainer": script, "seed": 2})
        lease = (broker.submit([spec]), broker.claim("cpu", "w", lease_seconds=60))[1]
        broker.complete(lease, Result(spec_id=spec.id, attempt=lease.attempt, status="succeeded", val_bpb=1.2))
        ids, message = [folder_job, spec.id], "different configurations"
    code, out, err = cli("submission", *ids, "--out", str(tmp_path / "refused"))
    assert code == 2 and out == "" and "Traceback" not in err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "refused").exists()
