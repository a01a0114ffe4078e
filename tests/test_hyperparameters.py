"""The built-in trainer's hyperparameters are checked at submit against a table in core, and the table is
checked here against the trainer itself, so the two cannot drift."""

from __future__ import annotations

import dataclasses

import pytest

from golfq.core.errors import GolfqError
from golfq.core.hyperparameters import BUILTIN_HYPERPARAMETERS, SET_BY_GOLFQ, check_builtin_env, check_value
from golfq.core.spec import SpecError, parse_spec
from tests.golfq_helpers import broker, cli  # noqa: F401 (fixtures)


def test_the_table_is_exactly_what_the_trainer_reads():
    pytest.importorskip("torch")
    from golfq.workers.golf.quantize import COMPRESSORS
    from golfq.workers.golf.train import Hyperparameters

    fields = {f.name.upper(): f for f in dataclasses.fields(Hyperparameters)}
    assert set(BUILTIN_HYPERPARAMETERS) == set(fields) - set(SET_BY_GOLFQ)
    assert set(SET_BY_GOLFQ) <= set(fields)
    assert BUILTIN_HYPERPARAMETERS["COMPRESSOR"].choices == COMPRESSORS
    for key, param in BUILTIN_HYPERPARAMETERS.items():
        default = getattr(Hyperparameters, fields[key].name)
        assert type(default) is param.kind, key
        check_value(key, str(int(default) if isinstance(default, bool) else default), param)  # the default passes


@pytest.mark.parametrize(("env", "message"), [
    ({"NUM_LAYER": "11"}, "env.NUM_LAYER: the built-in trainer has no such hyperparameter (did you mean NUM_LAYERS?"),
    ({"NUM_LAYERS": "1e23"}, "env.NUM_LAYERS: '1e23' is not an integer"),
    ({"NUM_LAYERS": "100000000000000000000000"}, "env.NUM_LAYERS: 100000000000000000000000 is out of range (1 to 256)"),
    ({"NUM_LAYERS": "0"}, "out of range"),
    ({"MATRIX_LR": "fast"}, "env.MATRIX_LR: 'fast' is not a number"),
    ({"MATRIX_LR": "nan"}, "out of range"),
    ({"MUON_MOMENTUM": "1.5"}, "out of range (0 to 1)"),
    ({"COMPRESSOR": "gzip"}, "env.COMPRESSOR: 'gzip' is not one of 'zlib', 'zstd', 'lzma'"),
    ({"TIE_EMBEDDINGS": "maybe"}, "is not a boolean"),
    ({"ARTIFACT_DIR": "/tmp"}, "no such hyperparameter"),
])
def test_a_builtin_spec_with_a_bad_hyperparameter_is_refused(env, message):
    with pytest.raises(SpecError) as caught:
        check_builtin_env(parse_spec({"env": env}))
    assert message in str(caught.value)


def test_good_values_library_variables_and_scripts_pass():
    good = {"NUM_LAYERS": "11", "MATRIX_LR": "0.02", "TIE_EMBEDDINGS": "false", "COMPRESSOR": "zstd", "DEVICE": "cpu",
            "OMP_NUM_THREADS": "2", "NCCL_DEBUG": "INFO", "TORCH_LOGS": "+dynamo"}
    assert check_builtin_env(parse_spec({"env": good})).env == good
    script = parse_spec({"env": {"NUM_LAYER": "11", "ANYTHING": "x"}, "trainer": "sha256:" + "0" * 64})
    assert check_builtin_env(script) is script


def test_submit_refuses_a_typo_and_queues_nothing(cli, broker, tmp_path):
    code, _, err = cli("submit", "--set", "NUM_LAYER=11")
    assert code == 2 and "did you mean NUM_LAYERS?" in err and broker.list() == []
    code, _, err = cli("submit", "--set", "NUM_LAYERS=1e23")
    assert code == 2 and "not an integer" in err and broker.list() == []
    (tmp_path / "train.py").write_text("print('hi')\n")
    code, _, err = cli("submit", "--script", "train.py", "--set", "NUM_LAYER=11")  # a script: free-form env
    assert code == 0, err


def test_the_client_checks_specs_it_is_given_whole(tmp_path):
    from golfq.producer.client import Client

    with Client(f"sqlite:///{tmp_path / 'q.db'}") as q:
        with pytest.raises(SpecError, match="did you mean NUM_LAYERS"):
            q.submit(parse_spec({"env": {"NUM_LAYER": "4"}}))
        with pytest.raises(GolfqError, match="did you mean NUM_LAYERS"):
            q.submit({"NUM_LAYER": 4})
        assert q.list() == []
