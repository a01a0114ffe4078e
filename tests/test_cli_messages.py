"""What the verbs say (issue 13): JSON an agent can always parse, tidy numbers and tables, one result
line, and input refused at submit in one line that names what is wrong."""

from __future__ import annotations

import json
import math

import pytest

from golfq.cli.console import tidy_numbers
from golfq.core.pareto import Front, FrontPoint
from golfq.core.result import Result
from golfq.core.spec import parse_spec
from golfq.producer.client import Client
from golfq.producer.specfile import InputError
from tests.golfq_helpers import FINAL_LINES, broker, cli, queue_url, submit_and_run, write_script  # noqa: F401 (fixtures)

# -- JSON -----------------------------------------------------------------------------------------


def test_pareto_json_is_one_document_even_on_an_empty_queue(cli):
    code, out, err = cli("pareto", "--json")
    assert code == 0, err
    assert json.loads(out) == {"feasible_only": False, "tracks": []}


def test_pareto_json_numbers_are_tidy_and_bytes_are_integers(cli, tmp_path):
    ids, _ = submit_and_run(cli, tmp_path, {"FAKE_BYTES": "1000001", "FAKE_TRAIN_S": "46.666", "FAKE_BPB": "1.1"},
                            seeds=(1, 2, 3))
    with Client(queue_url(tmp_path)) as q:  # the stored means do carry float noise, and a float byte count
        [raw] = q.front("cpu")
    assert isinstance(raw.artifact_bytes, float)
    code, out, _ = cli("pareto", "--json")
    [front] = json.loads(out)["tracks"]
    [point] = front["points"]
    assert point["artifact_bytes"] == 1000001 and isinstance(point["artifact_bytes"], int)
    assert point["train_seconds"] == 46.666 and sorted(point["job_ids"]) == sorted(ids)
    assert point["confirmed"] and point["val_bpb"] == pytest.approx(1.1, abs=1e-8)
    status = json.loads(cli("status", ids[0], "--json")[1])
    assert isinstance(status["result"]["artifact_bytes"], int)


def test_tidy_numbers_rounds_by_what_a_number_is():
    doc = {"artifact_bytes": 1000001.4999, "train_seconds": 46.666000000000004, "val_bpb": 1.2345678912345,
           "val_bpb_std": 0.1 + 0.2, "cost_usd": 0.123456789, "submitted_at": 1767312000.123456,
           "points": [{"total_seconds": 1 / 3}], "steps": 7, "name": "seconds", "nan_bpb": math.nan}
    tidy = tidy_numbers(doc)
    assert tidy["artifact_bytes"] == 1000001 and isinstance(tidy["artifact_bytes"], int)
    assert (tidy["train_seconds"], tidy["val_bpb"], tidy["val_bpb_std"]) == (46.666, 1.23456789, 0.3)
    assert (tidy["cost_usd"], tidy["submitted_at"]) == (0.123457, 1767312000.123)  # timestamps to the ms
    assert tidy["points"] == [{"total_seconds": 0.333}] and (tidy["steps"], tidy["name"]) == (7, "seconds")
    assert math.isnan(tidy["nan_bpb"])


# -- tables and lines -----------------------------------------------------------------------------


def test_tables_have_no_trailing_spaces(cli, tmp_path):
    submit_and_run(cli, tmp_path, {"FAKE_BPB": "1.4"})
    for verb in (["status"], ["pareto"], ["ops", "stats"]):
        code, out, err = cli(*verb)
        assert code == 0, err
        padded = [line for line in out.splitlines() if line != line.rstrip()]
        assert padded == [], (verb, padded)


def test_worker_and_wait_print_one_line_per_result_the_same_way(cli, tmp_path):
    [good, bad], worker_out = submit_and_run(cli, tmp_path, {"FAKE_BPB": "1.25", "FAKE_BYTES": "2500000"},
                                             {"FAKE_BPB": "nan"})
    worker_lines = {line.split()[0]: line for line in worker_out.splitlines() if "started" not in line}
    code, out, _ = cli("wait", good)
    assert code == 0 and out.strip() == worker_lines[good]
    assert out.strip().startswith(f"{good}  succeeded  val_bpb=1.2500  size=2.50 MB  train=1.5 s")
    code, out, _ = cli("wait", bad)
    assert code == 1 and out.startswith(f"{bad}  failed (user)")
    assert worker_lines[bad].startswith(f"{bad}  failed (user)")


def test_ops_stats_prices_attempts_like_ops_cost(cli, broker, monkeypatch):
    monkeypatch.setenv("GOLFQ_PRICES", "H100=3.6")
    [job] = broker.submit([parse_spec({"pool": "h100"})])
    lease = broker.claim("h100", "w")  # a result without its own cost: priced now from its GPU-seconds
    broker.complete(lease, Result(spec_id=job.id, attempt=1, status="succeeded", gpu_name="NVIDIA H100 80GB HBM3",
                                  gpu_count=1, gpu_seconds=3600.0))
    usage = json.loads(cli("ops", "stats", "--json")[1])["usage"]
    [row] = json.loads(cli("ops", "cost", "--json")[1])
    assert usage == {"h100": {"attempts": 1, "gpu_seconds": 3600.0, "cost_usd": 3.6}}
    assert row == {"key": "h100", **usage["h100"]}


# -- refused at submit ----------------------------------------------------------------------------


def refused(cli, broker, *args: str, stdin: str | None = None) -> str:
    code, out, err = cli("submit", *args, stdin=stdin)
    assert (code, out) == (2, ""), err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("golfq: "), err
    assert broker.list() == []
    return lines[0].removeprefix("golfq: ")


def test_a_binary_script_is_refused_at_submit(cli, tmp_path, broker):
    (tmp_path / "model.bin").write_bytes(b"\x7fELF\x00\x01\x02")
    assert (refused(cli, broker, "--pool", "cpu", "--script", "model.bin")
            == "script model.bin: not a text file (contains NUL bytes)")
    (tmp_path / "latin1.py").write_bytes("print('caf\xe9')\n".encode("latin-1"))
    assert refused(cli, broker, "--script", "latin1.py") == "script latin1.py: not UTF-8 text (byte 10)"
    with pytest.raises(InputError, match="not a text file"):
        Client(queue_url(tmp_path)).submit(pool="cpu", script=b"\x00\x01")


def test_spec_input_errors_name_what_is_wrong(cli, tmp_path, broker):
    (tmp_path / "specs").mkdir()
    (tmp_path / "nested.toml").write_text('pool = "cpu"\n[env]\nNUM_LAYERS = [1, 2]\n')
    (tmp_path / "table.toml").write_text('pool = "cpu"\nNUM_LAYERS = {a = 1}\n')
    assert refused(cli, broker, "specs") == "specs: is a directory, expected a spec file (.toml or .json)"
    assert refused(cli, broker, "-", stdin='"hello"\n') == "stdin: expected a spec object, got string"
    assert refused(cli, broker, "-", stdin="[1]") == "stdin item 0: expected a spec object, got number"
    assert refused(cli, broker, "nested.toml") == "nested.toml: env.NUM_LAYERS: expected a string or number, got array"
    assert refused(cli, broker, "table.toml") == "table.toml: env.NUM_LAYERS: expected a string or number, got table"
    assert refused(cli, broker, "-", stdin='pool = "cpu"\nname = \n').startswith("stdin: invalid TOML")


@pytest.mark.parametrize("how", ["toml", "stdin", "set"])
def test_a_lower_case_env_key_is_named_once(cli, tmp_path, broker, how):
    (tmp_path / "spec.toml").write_text('pool = "cpu"\n[env]\nfoo = "1"\n')
    args = {"toml": ["spec.toml"], "stdin": ["-"], "set": ["--set", "env.foo=1"]}[how]
    message = refused(cli, broker, *args, stdin='{"pool": "cpu", "env": {"foo": 1}}' if how == "stdin" else None)
    assert message.endswith("env.foo: keys must be UPPER_SNAKE_CASE") and message.count("spec") <= 1, message
    assert not message.startswith("spec: spec:")


# -- data for the built-in trainer ----------------------------------------------------------------


def test_submit_warns_when_a_local_queue_lacks_the_builtin_trainers_data(cli, tmp_path, broker):
    code, out, err = cli("submit", "--pool", "cpu", "--baseline", "--json")
    assert code == 0 and json.loads(out)["new"] is True and len(broker.list()) == 1  # accepted all the same
    [warning] = err.splitlines()
    missing = tmp_path / "data" / "datasets" / "fineweb10B_sp1024"
    assert warning.startswith(f"golfq: warning: {missing} does not exist")
    assert warning.endswith("run: golfq data prepare --source fineweb --vocab 1024")

    data = tmp_path / "data"
    (data / "datasets" / "stdlib_sp512").mkdir(parents=True)
    (data / "tokenizers").mkdir()
    (data / "tokenizers" / "stdlib_512_bpe.model").write_bytes(b"m")
    spec = '{"pool": "cpu", "data": {"dataset": "stdlib_sp512", "tokenizer": "stdlib_512_bpe"}}'
    assert cli("submit", "-", stdin=spec)[2] == ""  # prepared here: nothing to say
    write_script(tmp_path, FINAL_LINES)
    assert cli("submit", "--pool", "cpu", "--script", "train_gpt.py")[2] == ""  # a script brings its own data


def test_plot_outlines_confirmed_points_and_says_so_only_then(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from golfq.ops.plot import plot_fronts

    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)

    def point(bpb: float, confirmed: bool) -> FrontPoint:
        return FrontPoint(config=str(bpb), job_ids=("j",), seeds=3 if confirmed else 1, artifact_bytes=1e6 + bpb,
                          train_seconds=60 - bpb, val_bpb=bpb, val_bpb_std=0.0, feasible=True, confirmed=confirmed)

    for confirmed in (True, False):
        front = Front(track="cpu", points=(point(1.2, confirmed), point(1.3, False)), groups=2, results=4)
        plot_fronts([front], tmp_path / "front.png")
        left = drawn.pop().axes[0]
        legend = left.get_legend()
        labels = [t.get_text() for t in legend.get_texts()] if legend else []
        assert ("confirmed (3+ seeds)" in labels) is confirmed
        dots = [c for c in left.collections if len(c.get_offsets()) == 2][0]
        outlined = [tuple(e) != (0.0, 0.0, 0.0, 0.0) for e in dots.get_edgecolors()]
        assert outlined == [confirmed, False]


def test_plot_fits_the_data_labels_points_and_marks_the_infeasible(tmp_path, monkeypatch):
    """Points of 0.3-1 MB fill the panel (the 16 MB limit is noted at the edge, not drawn at the far right);
    each point is labelled; an infeasible point is a red cross of its own; the notes say what the bars are."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from golfq.ops.plot import plot_fronts

    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)

    def point(config: str, mb: float, bpb: float, feasible: bool = True) -> FrontPoint:
        return FrontPoint(config=config, job_ids=("j",), seeds=2, artifact_bytes=mb * 1e6, train_seconds=20 * mb,
                          val_bpb=bpb, val_bpb_std=0.01, feasible=feasible, confirmed=False)

    small = Front(track="cpu", points=(point("a", 0.3, 2.56), point("b", 0.5, 2.5), point("c", 1.0, 2.46)))
    plot_fronts([small], tmp_path / "front.png", names={"a": "demo 2x64"})
    fig = drawn.pop()
    left = fig.axes[0]
    assert left.get_xlim()[1] < 1.2
    texts = [t.get_text() for t in left.texts]
    assert "demo 2x64" in texts and "b" in texts and any("16,000,000-byte limit" in t for t in texts)
    assert "lower is better" in left.get_ylabel()
    assert any("error bars: ±1 std over seeds" in t.get_text() for t in fig.texts)

    near = Front(track="cpu", points=(point("a", 9.0, 1.3), point("big", 18.0, 1.2, feasible=False)))
    plot_fronts([near], tmp_path / "front.png")
    left = drawn.pop().axes[0]
    assert left.get_xlim()[0] < 16.0 < left.get_xlim()[1]
    crosses = [c for c in left.collections if len(c.get_offsets()) == 1 and c.get_offsets()[0][0] == 18.0]
    red, green, _, _ = crosses[0].get_facecolors()[0]
    assert red > 0.7 and green < 0.3  # red crosses, apart from the viridis dots
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    assert "infeasible (over a limit)" in legend and "16,000,000-byte limit" in legend
