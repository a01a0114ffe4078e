"""The Modal App's declarations, and its pool functions' bodies run in-process against the stand-ins."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.core.spec import Budget, ExperimentSpec
from golfq.workers.modal import app as modal_app
from golfq.workers.modal.config import DEFAULT_POOLS, ModalConfigError, call_timeout, load_config
from golfq.workers.modal.dispatch import Dispatcher, read_lease
from golfq.workers.runner import process_count, training_command
from tests.contract.helpers import all_events, kinds
from tests.modal_fakes import FakeModal
from tests.test_modal_dispatch import FakeSpawner

pytestmark = pytest.mark.filterwarnings("ignore:.*executing locally:UserWarning")

POOL_FUNCTIONS = {"cpu": modal_app.run_cpu, "h100": modal_app.run_h100, "h100x8": modal_app.run_h100x8}


def test_one_function_per_pool_with_its_gpu_pinned():
    # "H100" alone may be placed on an H200 and file its results on the H100 track; "H100!" may not
    assert {pool: fn.info().gpus for pool, fn in POOL_FUNCTIONS.items()} == {
        "cpu": [], "h100": [("H100!", 1)], "h100x8": [("H100!", 8)]}
    assert {pool: modal_app.DECLARED[f"run_{pool}"]["gpu"] for pool in POOL_FUNCTIONS} == {
        "cpu": None, "h100": "H100!", "h100x8": "H100!:8"}


def test_gpu_functions_reserve_cpu_and_memory_for_their_ranks():
    declared = {pool: (modal_app.DECLARED[f"run_{pool}"]["cpu"], modal_app.DECLARED[f"run_{pool}"]["memory"])
                for pool in POOL_FUNCTIONS}
    assert declared["h100"][0] >= 4 and declared["h100"][1] >= 32 * 1024
    assert declared["h100x8"][0] >= 8 * 2 and declared["h100x8"][1] >= 8 * 16 * 1024  # 8 ranks + torch.compile


def test_each_pool_has_its_own_autoscaler_settings_from_config_and_scales_to_zero():
    for pool, fn in POOL_FUNCTIONS.items():
        declared, wanted = modal_app.DECLARED[f"run_{pool}"], DEFAULT_POOLS[pool]
        assert declared["min_containers"] == 0
        assert (declared["max_containers"], declared["buffer_containers"], declared["scaledown_window"]) == (
            wanted.max_containers, wanted.buffer_containers, wanted.scaledown_window)
        info = fn.info()
        assert info.timeout == wanted.timeout_seconds >= Budget().hard_timeout  # the default budget fits
        assert info.max_retries == wanted.retries >= 1  # preemption re-runs the call
        assert {path: v.name for path, v in info.volumes.items()} == {"/data": "golfq-data",
                                                                      "/artifacts": "golfq-artifacts"}


def autoscaler_settings(function):
    """The AutoscalerSettings that modal's client sends when it creates this function (FunctionCreate)."""
    from modal._utils.async_utils import synchronizer
    from modal_proto import api_pb2

    load = synchronizer._translate_in(function)._load
    captured = dict(zip(load.__code__.co_freevars, (cell.cell_contents for cell in load.__closure__),
                        strict=True))
    settings = captured["autoscaler_settings"]
    assert isinstance(settings, api_pb2.AutoscalerSettings)
    return settings


def test_modal_creates_each_pool_function_with_its_own_scale_down_window():
    sent = {pool: autoscaler_settings(fn) for pool, fn in POOL_FUNCTIONS.items()}
    assert {pool: s.scaledown_window for pool, s in sent.items()} == {
        pool: DEFAULT_POOLS[pool].scaledown_window for pool in POOL_FUNCTIONS}
    assert {pool: (s.min_containers, s.max_containers) for pool, s in sent.items()} == {
        pool: (0, DEFAULT_POOLS[pool].max_containers) for pool in POOL_FUNCTIONS}
    # an idle 8xH100 container bills 8 GPUs and rarely gets a next job in time; a 1-GPU pool's stream does
    assert sent["h100x8"].scaledown_window < sent["h100"].scaledown_window


def test_dispatcher_runs_on_a_schedule_alone_and_data_prep_owns_the_data_volume():
    assert modal_app.dispatch.info().schedule == "Period(seconds=60.0)"
    assert modal_app.DECLARED["dispatch"]["max_containers"] == 1  # one dispatcher at a time
    assert modal_app.dispatch.info().gpus == []
    prep = modal_app.prepare_data.info()
    assert list(prep.volumes) == ["/data"] and prep.timeout == modal_app.DATA_PREP_TIMEOUT and prep.gpus == []


def test_the_image_carries_the_trainer_pinned_and_the_project_source():
    assert [p for p in modal_app.TRAINER_PACKAGES if p.startswith("torch")] == ["torch==2.13.0"]
    assert all("<" in p or "==" in p for p in modal_app.TRAINER_PACKAGES)
    assert modal_app.RUNTIME_ENV["GOLFQ_QUEUE"] == "modal://golfq"
    assert json.loads(modal_app.RUNTIME_ENV["GOLFQ_MODAL_CONFIG_JSON"])["pools"]["h100x8"]["gpu"] == "H100!:8"


def test_the_h100x8_pool_runs_torchrun_across_eight_gpus_in_its_container():
    spec = ExperimentSpec(pool="h100x8")
    command = training_command(None, process_count(spec, None))
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=8"]


def test_config_file_sets_resources_and_caps(monkeypatch, tmp_path):
    path = tmp_path / "modal.toml"
    path.write_text('[pools.h100x8]\ncpu = 48.0\nmax_containers = 3\nmax_gpu_hours = 50\nscaledown_window = 300\n')
    monkeypatch.setenv("GOLFQ_MODAL_CONFIG", str(path))
    monkeypatch.setenv("GOLFQ_MODAL_APP", "golfq-alt")
    try:
        app = importlib.reload(modal_app)
        assert app.run_h100x8.info().gpus == [("H100!", 8)] and app.DECLARED["run_h100x8"]["cpu"] == 48.0
        assert app.DECLARED["run_h100x8"]["max_containers"] == 3
        assert autoscaler_settings(app.run_h100x8).scaledown_window == 300
        assert autoscaler_settings(app.run_h100).scaledown_window == DEFAULT_POOLS["h100"].scaledown_window
        assert app.run_h100.info().gpus == [("H100!", 1)]  # other pools keep their defaults
        assert app.run_h100.info().volumes["/data"].name == "golfq-alt-data"
        assert json.loads(app.RUNTIME_ENV["GOLFQ_MODAL_CONFIG_JSON"])["pools"]["h100x8"]["max_gpu_hours"] == 50
    finally:
        monkeypatch.delenv("GOLFQ_MODAL_CONFIG")
        monkeypatch.delenv("GOLFQ_MODAL_APP")
        importlib.reload(modal_app)


@pytest.mark.parametrize("text, problem", [
    ('[pools.h100]\nscaledown_window = 0\n', "scaledown_window"),
    ('[pools.cpu]\ngpu = "H100"\n', "pools.cpu.gpu"),
    ('[pools.tpu]\nmax_containers = 1\n', "pools.tpu"),
    ('[pools.h100x8]\ngpu = ["H100!:8", "H200:8"]\n', "'H200:8' may run on other hardware"),
    ('[pools.h100]\ngpu = "H100"\n', "use 'H100!'"),
    ('[pools.h100x8]\ngpu = "H100!:4"\n', "pools.h100x8.gpu"),
    ('[pools.h100]\nmax_containers = "many"\n', "max_containers"),
])
def test_bad_config_is_one_line_naming_the_setting(tmp_path, text, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ModalConfigError) as error:
        load_config(path)
    assert problem in str(error.value) and "\n" not in str(error.value)


def test_call_timeout_covers_the_budget_in_whole_hours():
    pool = DEFAULT_POOLS["h100"]
    assert call_timeout(pool, Budget().hard_timeout) is None
    assert call_timeout(pool, 5000) == 7200
    with pytest.raises(ModalConfigError):
        call_timeout(pool, 24 * 3600)


# -- the pool functions' body, in-process -----------------------------------------------------

SCRIPT = """\
import os, pathlib
with open(os.environ["RUNS_FILE"], "a") as handle:
    handle.write("ran\\n")
print("final_int8_zlib_roundtrip_exact val_loss:2.0000 val_bpb:1.2500")
print("Total submission size int8+zlib: 1234567 bytes")
"""


@pytest.fixture
def cloud(monkeypatch, tmp_path):
    """A fake workspace whose broker the pool functions' body reports to."""
    fake = FakeModal()
    broker = fake.broker("modal://golfq")
    monkeypatch.setattr(modal_app, "open_job_broker", lambda: fake.broker("modal://golfq"))
    monkeypatch.setenv("GOLFQ_ARTIFACTS_MOUNT", str(tmp_path / "artifacts"))
    return broker


def _submit_script_job(broker, tmp_path: Path, pool: str = "h100"):
    ref = broker.put_script(SCRIPT.encode())
    spec = ExperimentSpec(pool=pool, trainer=ref, env={"RUNS_FILE": str(tmp_path / "runs.txt")},
                          budget=Budget(train_seconds=30))
    return broker.submit([spec])[0]


def _runs(tmp_path: Path) -> int:
    path = tmp_path / "runs.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_spawned_call_runs_the_job_with_the_shared_runner_and_reports_it(cloud, tmp_path):
    job = _submit_script_job(cloud, tmp_path)
    spawner = FakeSpawner()
    Dispatcher(cloud, spawner, load_config()).run_once()
    (function, payload, _, _), = spawner.calls
    assert function == "run_h100"
    assert "succeeded" in modal_app.run_h100.local(payload)
    done = cloud.get(job.id)
    assert done.state is JobState.SUCCEEDED and done.result.val_bpb == 1.25
    assert done.result.gpu_count == 1 and done.result.gpu_seconds > 0 and done.result.cost_usd > 0
    assert Path(done.result.log_path).is_relative_to(tmp_path / "artifacts" / "runs")  # logs land on the Volume
    assert [p.val_bpb for p in cloud.front("1xH100").points] == [1.25]


def test_a_call_delivered_three_times_trains_once_and_counts_once(cloud, tmp_path):
    job = _submit_script_job(cloud, tmp_path, pool="cpu")
    spawner = FakeSpawner()
    Dispatcher(cloud, spawner, load_config()).run_once()
    payload = spawner.calls[0][1]
    outputs = [modal_app.run_cpu.local(payload) for _ in range(3)]  # Modal re-ran the same input twice
    assert "succeeded" in outputs[0] and all("nothing to run" in o for o in outputs[1:])
    assert _runs(tmp_path) == 1
    assert kinds(all_events(cloud), job.id).count(EventKind.SUCCEEDED) == 1


def test_a_preempted_call_is_rerun_on_the_same_lease_and_counted_once(cloud, tmp_path):
    job = _submit_script_job(cloud, tmp_path, pool="cpu")
    spawner = FakeSpawner()
    Dispatcher(cloud, spawner, load_config()).run_once()
    payload = spawner.calls[0][1]
    lease = read_lease(payload)
    assert cloud.heartbeat(lease, 60)  # the first container started, then was preempted before reporting
    assert "succeeded" in modal_app.run_cpu.local(payload)  # Modal's retry: same input, same attempt
    done = cloud.get(job.id)
    assert (done.state, done.attempt, done.result.attempt) == (JobState.SUCCEEDED, 1, 1)
    assert kinds(all_events(cloud), job.id) == [EventKind.SUBMITTED, EventKind.CLAIMED, EventKind.SUCCEEDED]


def test_a_call_for_a_cancelled_job_does_not_train(cloud, tmp_path):
    job = _submit_script_job(cloud, tmp_path, pool="cpu")
    spawner = FakeSpawner()
    Dispatcher(cloud, spawner, load_config()).run_once()
    cloud.cancel([job.id])
    assert "nothing to run" in modal_app.run_cpu.local(spawner.calls[0][1])
    assert _runs(tmp_path) == 0 and cloud.get(job.id).state is JobState.CANCELLED


def test_dispatch_once_wires_the_dispatcher_to_a_broker_and_spawner(cloud, tmp_path):
    _submit_script_job(cloud, tmp_path)
    spawner = FakeSpawner()
    (report,) = modal_app.dispatch_once(0.0, spawner=spawner, broker=cloud)
    assert len(report.pools["h100"].spawned) == 1 and len(spawner.calls) == 1



def test_a_duplicated_spawn_never_trains_an_attempt_twice(cloud, tmp_path):
    from golfq.workers.modal.call import ContainerLife, serve_call

    job = _submit_script_job(cloud, tmp_path)
    spawner = FakeSpawner()
    Dispatcher(cloud, spawner, load_config()).run_once()
    lease = read_lease(spawner.calls[0][1])
    trained = []

    def run() -> str:
        trained.append(lease.attempt)
        return "succeeded"

    first = serve_call(cloud, lease, token="in-1", life=ContainerLife(0.0, "ta-1"), lease_seconds=60, run=run)
    twin = serve_call(cloud, lease, token="in-2", life=ContainerLife(0.0, "ta-2"), lease_seconds=60, run=run)
    rerun = serve_call(cloud, lease, token="in-1", life=ContainerLife(0.0, "ta-3"), lease_seconds=60, run=run)
    assert "succeeded" in first and "another container runs this attempt" in twin
    assert rerun.endswith("succeeded") and trained == [1, 1]  # Modal's own re-run of the same input may go on
    assert cloud.get(job.id).state is JobState.LEASED


def test_the_volume_store_writes_and_reads_one_spelling_of_each_path(tmp_path):
    from golfq.core.backends.modal.store import VolumeBlobStore

    class Volume:  # modal.Volume's calls the store makes, recording the paths it is given
        def __init__(self) -> None:
            self.files: dict[str, bytes] = {}

        def batch_upload(self, force: bool = False):
            volume = self

            class Batch:
                def __enter__(self):
                    return self

                def __exit__(self, *exc) -> None:
                    pass

                def put_file(self, data, remote: str) -> None:
                    volume.files[remote] = data.read()

            return Batch()

        def read_file(self, path: str):
            if path not in self.files:
                raise FileNotFoundError(path)
            yield self.files[path]

        def remove_file(self, path: str) -> None:
            if self.files.pop(path, None) is None:
                raise FileNotFoundError(path)

    volume = Volume()
    store = VolumeBlobStore(volume)
    store.put("scripts/abc.py", b"print(1)")
    store.put_many({"/pages/events/1/0.bin": b"p0", "pages/events/1/1.bin": b"p1"})
    assert set(volume.files) == {"/scripts/abc.py", "/pages/events/1/0.bin", "/pages/events/1/1.bin"}
    assert store.get("scripts/abc.py") == store.get("/scripts/abc.py") == b"print(1)"
    store.delete("scripts/abc.py")
    store.delete("scripts/abc.py")  # gone already: no error
    with pytest.raises(KeyError):
        store.get("scripts/abc.py")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "def.py").write_bytes(b"x")
    assert VolumeBlobStore(volume, str(tmp_path)).get("/scripts/def.py") == b"x"  # inside a container: the mount
