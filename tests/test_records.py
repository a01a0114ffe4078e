"""A record folder in, a record folder out: `golfq record import` on real record folders of
openai/parameter-golf (tests/fixtures/records: their README, submission.json and requirements.txt),
`golfq submission`'s submission.json, requirements.txt and README, and the round trip between them."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from golfq.core.environment import parse_environment
from golfq.core.result import Result
from golfq.core.spec import parse_spec
from golfq.ops import OpsError
from golfq.ops.recordfile import environment_declaration, render_toml
from golfq.ops.records import import_record
from golfq.ops.submission import write_submission
from golfq.producer.specfile import prepare
from tests.golfq_helpers import broker, cli  # noqa: F401 (fixtures)

RECORDS = Path(__file__).resolve().parent / "fixtures" / "records"
TOP = RECORDS / "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
LOOPED = RECORDS / "2026-04-22_SP8192_CaseOps_GatedAttn_QuantGate_Loop45_PhasedTTT_MLPClip12"
NO_DATA_PATH = RECORDS / "2026-04-29_SmearGateBOSFix_3Seed_1.06141"
BASELINE = RECORDS / "2026-03-17_NaiveBaseline"
SET_BY_GOLFQ = {"SEED", "MAX_WALLCLOCK_SECONDS", "DATA_PATH", "TOKENIZER_PATH", "RUN_ID"}


def readme_assignments(folder: Path, launch_line: str) -> dict[str, str]:
    """The NAME=value words of the launch line, read independently of the importer."""
    words = launch_line.split()
    assignments = [w for w in words[:next(i for i, w in enumerate(words) if "=" not in w)]]
    return dict(w.split("=", 1) for w in assignments)


def imported(folder: Path, tmp_path: Path) -> tuple[dict, str]:
    spec_file = tmp_path / "spec.toml"
    record = import_record(folder, spec_file)
    text = render_toml(record)
    spec_file.write_text(text)
    return tomllib.loads(text), text


@pytest.mark.parametrize("folder", sorted(RECORDS.iterdir()), ids=lambda p: p.name[:24])
def test_every_fixture_record_imports_as_a_valid_spec(folder, tmp_path):
    doc, _ = imported(folder, tmp_path)
    assert (tmp_path / doc["code"]).resolve() == folder.resolve()
    assert doc["pool"] == "h100x8"  # every one launches torchrun --nproc_per_node=8
    spec = parse_spec({k: v for k, v in doc.items() if k != "code"})
    assert spec.env and not set(spec.env) & SET_BY_GOLFQ
    readme = (folder / "README.md").read_text()
    for key, value in spec.env.items():
        assert f"{key}={value}" in readme or f"{key}=${{" in readme or key in readme


def test_the_top_record_gives_its_environment_requirements_and_data(tmp_path):
    record = import_record(TOP, tmp_path / "spec.toml")
    doc, text = imported(TOP, tmp_path)
    launch = readme_assignments(TOP, record.launch.line)
    assert len(launch) == 44
    want_env = {k: v for k, v in launch.items() if k not in SET_BY_GOLFQ}
    assert doc["env"] == want_env and doc["env"]["COMPRESSOR"] == "pergroup" and doc["env"]["LQER_RANK"] == "4"
    assert doc["seed"] == 42 and doc["budget"] == {"train_seconds": 600.0}
    assert doc["data"] == {"dataset": "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved",
                           "tokenizer": "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved"}
    lines = [ln.strip() for ln in (TOP / "requirements.txt").read_text().splitlines()]
    assert record.requirements == [ln for ln in lines if ln and not ln.startswith("#")]
    assert record.requirements[0] == "torch==2.9.1+cu128"
    assert all(f"#   {req}" in text for req in record.requirements)
    assert record.system_packages == ["lrzip"]
    assert any("flash_attn_3" in line and "--find-links" in line for line in record.outside_pip)
    assert "DATA_DIR=./data" in text  # a relative path is flagged for the user to check


def test_a_seed_loop_runs_its_first_seed_and_says_so(tmp_path):
    doc, text = imported(LOOPED, tmp_path)
    assert doc["seed"] == 314
    assert "seeds 314 2025 777 1 1337" in text
    assert "SEED" not in doc["env"]
    # no requirements.txt: the README's pip install line, and its index-url install outside pip
    record = import_record(LOOPED, tmp_path / "spec.toml")
    assert record.requirements == ["flash-attn-interface", "sentencepiece", "triton", "numpy"]
    assert record.outside_pip == ["pip install torch --index-url https://download.pytorch.org/whl/cu128"]


def test_data_names_from_the_tokenizer_a_folder_ships(tmp_path):
    folder = tmp_path / NO_DATA_PATH.name
    shutil.copytree(NO_DATA_PATH, folder)
    assert "data" not in imported(folder, tmp_path)[0]  # neither a path nor a tokenizer: golfq's default
    (folder / "tokenizers").mkdir()
    (folder / "tokenizers" / "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model").write_bytes(b"")
    assert imported(folder, tmp_path)[0]["data"] == {
        "dataset": "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved",
        "tokenizer": "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved"}


def test_the_baseline_keeps_its_data_names_from_absolute_paths_and_drops_run_id(tmp_path):
    doc, text = imported(BASELINE, tmp_path)
    assert doc["data"] == {"dataset": "fineweb10B_sp1024", "tokenizer": "fineweb_1024_bpe"}
    assert "RUN_ID" not in doc["env"] and "RUN_ID: golfq names each run itself" in text
    assert doc["env"] == {"NCCL_IB_DISABLE": "1", "VOCAB_SIZE": "1024", "TRAIN_LOG_EVERY": "50",
                          "VAL_LOSS_EVERY": "200"}


def test_the_cli_writes_the_spec_file_and_the_folders_environment(cli, tmp_path):
    folder = shutil.copytree(TOP, tmp_path / "records" / TOP.name)
    (folder / "train_gpt.py").write_text("print('a stand-in: the fixture keeps no script')\n")
    code, out, err = cli("record", "import", str(folder))
    assert code == 0, err
    written = tmp_path / f"{TOP.name}.toml"
    assert f"wrote {written}" in out and tomllib.loads(written.read_text())["seed"] == 42
    # What requirements.txt cannot carry (lrzip, the FlashAttention 3 wheel) is declared where environments are built.
    declared = parse_environment((folder / "requirements.txt").read_text(), (folder / "golfq.toml").read_text())
    assert declared.system == ("lrzip",)
    assert [step.split()[:3] for step in declared.build] == [["uv", "pip", "install"]]
    assert "flash_attn_3" in declared.build[0] and "--find-links" in declared.build[0]
    assert prepare(tomllib.loads(written.read_text()), base=tmp_path).spec.is_code_folder
    code, _, err = cli("record", "import", str(folder))
    assert code == 2 and "exists" in err and len(err.strip().splitlines()) == 1
    (folder / "golfq.toml").write_text("[environment]\nsystem = []\n")  # the user's own is never overwritten
    code, out, _ = cli("record", "import", str(folder), "--force")
    assert code == 0 and "golfq.toml" not in out and (folder / "golfq.toml").read_text().endswith("system = []\n")


def test_a_record_that_installs_only_torch_outside_pip_declares_nothing(tmp_path):
    record = import_record(LOOPED, tmp_path / "spec.toml")
    assert record.outside_pip and environment_declaration(record) is None


def _bad_folders(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    no_readme = tmp_path / "no_readme"
    no_readme.mkdir()
    no_launch = tmp_path / "no_launch"
    no_launch.mkdir()
    (no_launch / "README.md").write_text("# A record\n\n```bash\npip install brotli\npython3 prep.py\n```\n")
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "README.md").write_bytes(b"\xff\xfe\x00launch")
    readme_dir = tmp_path / "readme_dir"
    (readme_dir / "README.md").mkdir(parents=True)
    bad_requirements = tmp_path / "bad_requirements"
    shutil.copytree(BASELINE, bad_requirements)
    (bad_requirements / "requirements.txt").write_text("numpy\nthis is not a requirement\n")
    return {"missing": (tmp_path / "nowhere", "no such folder"),
            "a file": (TOP / "README.md", "not a folder"),
            "no README": (no_readme, "no README.md"),
            "no launch command": (no_launch, "no launch command"),
            "not UTF-8": (binary, "not UTF-8"),
            "README a folder": (readme_dir, "is a directory"),
            "requirements": (bad_requirements, "requirements.txt:2"),
            }


def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, tmp_path):
    for what, (folder, message) in _bad_folders(tmp_path).items():
        code, out, err = cli("record", "import", str(folder), "--out", str(tmp_path / "out.toml"))
        assert code == 2, (what, err)
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (what, err)
        assert not (tmp_path / "out.toml").exists(), what


# ------------------------------------------------------------------ golfq submission

RECORD_SCRIPT = b"""import os, time
import numpy as np
import torch
import brotli
from flash_attn_interface import flash_attn_func
import lzma, json
"""


def finished_jobs(broker, tmp_path, *, env, seeds=(42, 0, 1234), eval_seconds=(508.8, 455.1, 470.0),
                  pool="h100x8"):
    ref = broker.put_script(RECORD_SCRIPT)
    logs = {}
    for i, seed in enumerate(seeds):
        spec = parse_spec({"pool": pool, "trainer": ref, "seed": seed, "env": env, "name": "lqer stack",
                           "data": {"dataset": "fineweb10B_sp8192", "tokenizer": "fineweb_8192_bpe"}})
        broker.submit([spec])
        lease = broker.claim(pool, "w", lease_seconds=60)
        log = tmp_path / f"{spec.id}.log"
        log.write_text("Running PyTorch 2.9.1+cu128\nquantized_ttt_phased val_loss:2.3 val_bpb:1.06\n")
        logs[spec.id] = log
        broker.complete(lease, Result(
            spec_id=spec.id, attempt=lease.attempt, status="succeeded", val_bpb=1.059894537 + i * 0.0011,
            val_loss=2.319442123 + i * 0.0025, pre_quant_val_bpb=1.063958 + i * 0.001,
            pre_quant_val_loss=2.328487 + i * 0.002, artifact_bytes=15_897_259 + i * 5000, code_bytes=31_999,
            train_seconds=599.592, eval_seconds=eval_seconds[i], steps=4945 - i, step_ms=121.2734,
            gpu_name="H100" if pool == "h100x8" else None, gpu_count=8 if pool == "h100x8" else 0,
            finished_at=1777248000.0 + i, log_path=str(log)))
    return list(logs), logs


def submit_folder(broker, tmp_path, ids, logs, **options):
    return write_submission(broker, ids, tmp_path / "out", log_of=lambda job: logs[job.id],
                            builtin_source=lambda: "unused", **options)


def test_submission_json_has_every_record_field(broker, tmp_path):
    ids, logs = finished_jobs(broker, tmp_path, env={"COMPRESSOR": "pergroup", "LQER_RANK": "4"})
    written = submit_folder(broker, tmp_path, ids, logs, author="Ada", github_id="ada")
    doc = json.loads((written.out / "submission.json").read_text())
    assert doc["hardware"] == "8xH100 80GB SXM" and doc["track"] == "10min_16mb"
    assert doc["date"] == "2026-04-27" and doc["pytorch_version"] == "2.9.1+cu128"
    assert doc["compliance"] == {"train_under_600s": True, "eval_under_600s": True, "artifact_under_16mb": True,
                                 "three_seeds": True}
    assert doc["val_bpb"] == pytest.approx(1.060994537) and doc["val_bpb_std"] == pytest.approx(0.0011)
    assert doc["val_loss_std"] == pytest.approx(0.0025) and doc["pre_quant_val_bpb"] == pytest.approx(1.064958)
    assert doc["pre_quant_val_loss"] == pytest.approx(2.330487)
    assert (doc["artifact_bytes_mean"], doc["artifact_bytes_max"], doc["bytes_total"]) == (15902259, 15907259,
                                                                                          15907259)
    assert doc["seed_results"]["0"]["pre_quant_val_bpb"] == pytest.approx(1.064958)
    assert doc["seed_results"]["42"]["eval_time_s"] == 508.8
    assert written.warnings == []
    requirements = (written.out / "requirements.txt").read_text().splitlines()
    assert [ln for ln in requirements if not ln.startswith("#")] == ["torch==2.9.1+cu128", "numpy", "brotli"]
    assert any(ln.startswith("# flash_attn_interface:") and "flash_attn_3" in ln for ln in requirements)
    readme = (written.out / "README.md").read_text()
    assert "| 42 | 1.05989 | 2.31944 | 1.06396 | 15,897,259 | 4,945 | 121.3 | 599.6 | 508.8 |" in readme
    assert "| **mean** | 1.06099 |" in readme and "1.059894537" not in readme


def test_the_record_track_looks_at_eval_time_and_empty_names_warn(broker, tmp_path, cli):
    ids, logs = finished_jobs(broker, tmp_path, env={}, eval_seconds=(508.8, 612.0, 470.0))
    written = submit_folder(broker, tmp_path, ids, logs)
    doc = written.document
    assert doc["compliance"]["eval_under_600s"] is False and doc["compliance"]["train_under_600s"] is True
    assert doc["track"] == "non_record_16mb"
    assert [w.split(":")[0] for w in written.warnings] == ["submission.json has no author",
                                                           "submission.json has no github_id"]


def test_the_cli_prints_the_warnings(broker, tmp_path, cli):
    ids, _ = finished_jobs(broker, tmp_path, env={}, seeds=(1,), pool="cpu")
    code, out, err = cli("submission", *ids, "--out", str(tmp_path / "sub"))
    assert code == 0, err
    assert err.splitlines() == [
        "golfq: warning: submission.json has no author: give --author (records name their author)",
        "golfq: warning: submission.json has no github_id: give --github-id (records name their author)"]
    assert "track non_record_16mb" in out and (tmp_path / "sub" / "requirements.txt").is_file()


def test_a_submission_folder_round_trips_through_import(broker, tmp_path):
    env = {"COMPRESSOR": "pergroup", "LQER_RANK": "4", "TTT_LORA_RANK": "80"}
    ids, logs = finished_jobs(broker, tmp_path, env=env)
    written = submit_folder(broker, tmp_path, ids, logs, author="Ada", github_id="ada")
    doc, _ = imported(written.out, tmp_path)
    first = broker.get(sorted(ids, key=lambda i: broker.get(i).spec.seed)[0]).spec
    assert (tmp_path / doc["code"]).resolve() == written.out.resolve()
    again = parse_spec({k: v for k, v in doc.items() if k not in ("code", "name")})
    assert (again.pool, again.env, again.seed, again.data, again.budget.train_seconds) == (
        first.pool, first.env, first.seed, first.data, first.budget.train_seconds)
    assert import_record(written.out, tmp_path / "x.toml").requirements == ["torch==2.9.1+cu128", "numpy", "brotli"]


def test_an_install_line_with_a_placeholder_is_never_a_build_step(tmp_path):
    folder = shutil.copytree(BASELINE, tmp_path / "placeholder")
    (folder / "requirements.txt").write_text(
        "numpy\n# pip install --no-deps flash_attn_3 --find-links <the wheel index for your CUDA and torch build>\n"
        "# apt-get install -y lrzip\n")
    record = import_record(folder, tmp_path / "spec.toml")
    assert any("<the wheel index" in line for line in record.outside_pip)
    declared = parse_environment("numpy\n", environment_declaration(record))
    assert declared.system == ("lrzip",) and declared.build == ()


def test_submission_names_jobs_as_every_verb_does_rq_ids_too(broker, tmp_path):
    ids, logs = finished_jobs(broker, tmp_path, env={})
    written = submit_folder(broker, tmp_path, [f"{ids[0]}-1", *ids[1:]], logs, author="Ada", github_id="ada")
    assert written.document["golfq"]["jobs"] == sorted(ids, key=lambda i: broker.get(i).spec.seed)
    with pytest.raises(OpsError, match=r"^submission: job\(s\) not found in sqlite:\S+: nosuchjob$"):
        submit_folder(broker, tmp_path, [ids[0], "nosuchjob"], logs)


def test_record_import_to_stdout_with_json_writes_only_json(cli, tmp_path):
    folder = shutil.copytree(BASELINE, tmp_path / "records" / BASELINE.name)
    code, out, err = cli("record", "import", str(folder), "--out", "-", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["file"] == "-" and tomllib.loads(doc["toml"])["pool"] == doc["spec"]["pool"] == "h100x8"
    assert not list(tmp_path.glob("*.toml")) and not (folder / "golfq.toml").exists()
    code, out, _ = cli("record", "import", str(folder), "--out", "-")
    assert code == 0 and out == doc["toml"]
