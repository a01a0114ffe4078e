"""ExperimentSpec: canonical ids and one-line refusals that name the field."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest

from golfq.core.spec import (
    MAX_SCRIPT_BYTES,
    ExperimentSpec,
    SpecError,
    config_key,
    parse_spec,
    script_ref,
    spec_id,
)

BASE = {"pool": "h100", "env": {"NUM_LAYERS": "9", "MODEL_DIM": "512"}, "seed": 7, "budget": {"train_seconds": 600}}


def test_id_is_short_lowercase_alphanumeric():
    sid = parse_spec(BASE).id
    assert len(sid) == 16 and sid.isalnum() and sid == sid.lower()


def test_id_is_pinned_across_versions():
    # A golden vector: if this changes, every stored queue's dedupe breaks. It changed once, when the
    # default hard timeout grew to fit a record's evaluation (600 + 600 + 600 s, was 600 + 600 s).
    assert parse_spec(BASE).id == spec_id(parse_spec(dict(BASE)))
    assert parse_spec(BASE).id == "5smfzcemuyyjhag4"


def test_id_is_sha256_of_sorted_compact_json_of_outcome_fields():
    # Recomputed with the standard library alone, so any language can derive an id.
    import base64
    import hashlib
    import json

    outcome = {"v": 1, "pool": "h100", "trainer": "builtin", "env": BASE["env"], "seed": 7,
               "data": {"dataset": "fineweb10B_sp1024", "tokenizer": "fineweb_1024_bpe"},
               "budget": {"train_seconds": 600.0, "timeout_seconds": 1800.0}}
    canonical = json.dumps(outcome, sort_keys=True, separators=(",", ":")).encode()
    expected = base64.b32encode(hashlib.sha256(canonical).digest()[:10]).decode().lower()
    assert parse_spec(BASE).id == expected


def test_id_ignores_fields_that_do_not_change_the_outcome():
    base = parse_spec(BASE)
    cosmetic = parse_spec({**BASE, "name": "other", "tags": ["a", "b"], "priority": 5, "created_by": "agent-7",
                           "parent": "aaaaaaaaaaaaaaaa", "budget": {"train_seconds": 600, "retries": {"infra": 9}}})
    assert cosmetic.id == base.id


@pytest.mark.parametrize(
    "change",
    [
        {"pool": "cpu"},
        {"seed": 8},
        {"env": {"NUM_LAYERS": "10", "MODEL_DIM": "512"}},
        {"budget": {"train_seconds": 601}},
        {"budget": {"train_seconds": 600, "timeout_seconds": 900}},
        {"data": {"dataset": "stdlib_sp1024", "tokenizer": "stdlib_1024_bpe"}},
        {"trainer": "sha256:" + "ab" * 32},
    ],
)
def test_id_changes_with_every_outcome_field(change):
    assert parse_spec({**BASE, **change}).id != parse_spec(BASE).id


def test_env_order_does_not_matter_and_int_float_budgets_agree():
    a = parse_spec({**BASE, "env": {"MODEL_DIM": "512", "NUM_LAYERS": "9"}, "budget": {"train_seconds": 600.0}})
    assert a.id == parse_spec(BASE).id


def test_id_is_identical_in_another_process_with_another_hash_seed():
    code = "import sys, json; from golfq.core.spec import parse_spec; print(parse_spec(json.loads(sys.argv[1])).id)"
    out = subprocess.run([sys.executable, "-c", code, msgspec.json.encode(BASE).decode()], capture_output=True,
                         text=True, check=True, env={"PYTHONHASHSEED": "12345", "PATH": ""}, cwd=_repo_root())
    assert out.stdout.strip() == parse_spec(BASE).id


def test_config_key_is_blind_to_seed_only():
    assert config_key(parse_spec(BASE)) == config_key(parse_spec({**BASE, "seed": 99}))
    assert config_key(parse_spec(BASE)) != config_key(parse_spec({**BASE, "pool": "cpu"}))


def test_round_trip_through_json_keeps_the_id():
    spec = parse_spec({**BASE, "tags": ["x"], "name": "n"})
    again = parse_spec(msgspec.json.encode(spec))
    assert again == spec and again.id == spec.id


def test_specs_are_frozen():
    spec = parse_spec(BASE)
    with pytest.raises(AttributeError):
        spec.seed = 3  # type: ignore[misc]


def test_script_ref_and_size_limit():
    assert script_ref(b"print(1)\n").startswith("sha256:")
    assert script_ref(b"x" * MAX_SCRIPT_BYTES)
    with pytest.raises(SpecError, match="script: 1,048,577 bytes is over"):
        script_ref(b"x" * (MAX_SCRIPT_BYTES + 1))


def test_script_spec_exposes_its_hash():
    spec = parse_spec({"trainer": "sha256:" + "0f" * 32})
    assert spec.script_sha256 == "0f" * 32
    assert ExperimentSpec().script_sha256 is None


def _repo_root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1])
