"""A code folder's environment on Modal: an image layered on the pool's, read back from Modal's own
modal.Image objects (each layer's Dockerfile commands), chosen by the dispatcher's spawner from the pack
stored through the contract fakes; the runner inside such an image builds nothing."""

from __future__ import annotations

import modal
import pytest
from modal._utils.async_utils import synchronizer

from golfq.core.job import Lease
from golfq.core.result import FailureKind
from golfq.producer.specfile import prepare
from golfq.workers.modal import app as modal_app
from golfq.workers.modal.dispatch import ModalSpawner, lease_payload
from golfq.workers.modal.envimage import EnvironmentImages
from golfq.workers.runner import run_lease
from tests.envs_helpers import PACKAGE, code_folder
from tests.golfq_helpers import broker  # noqa: F401 (fixture)
from tests.modal_fakes import FakeModal

pytestmark = pytest.mark.filterwarnings("ignore:.*executing locally:UserWarning")

FA3 = ("uv pip install --no-build-isolation "
       "'flash_attn_3 @ git+https://github.com/Dao-AILab/flash-attention@v2.8.3#subdirectory=hopper'")
RECORD_TOML = '[environment]\nsystem = ["lrzip"]\nbuild = ["""' + FA3 + '"""]\n'
RECORD_REQUIREMENTS = "torch==2.9.1+cu128\nbrotli>=1.1\nsentencepiece\n"


def layers(image: modal.Image) -> list[list[str]]:
    """Each layer's Dockerfile commands, base first, as Modal would send them to its builder; a layer of
    local files (golfq's source) reads as ["MOUNT"]."""
    raw, found = synchronizer._translate_in(image), []
    while raw is not None:
        cells = dict(zip(raw._load.__code__.co_freevars, (c.cell_contents for c in raw._load.__closure__),
                         strict=True))
        if "base_image" in cells:  # add_local_python_source: a mount over the image beneath
            found.append(["MOUNT"])
            raw = cells["base_image"]
            continue
        make = cells.get("dockerfile_function")
        found.append(make("2025.06").commands if make else [])
        raw = (cells.get("base_images") or {}).get("base")
    return found[::-1]


class Recorded:
    object_id = "sb-recorded"


@pytest.fixture
def cloud(monkeypatch):
    sandboxes: list[dict] = []

    def create(*args, **kwargs):
        sandboxes.append({"args": args, **kwargs})
        return Recorded()

    monkeypatch.setattr(modal.Sandbox, "create", create)
    monkeypatch.setattr(modal.App, "lookup", lambda name, **kwargs: f"app:{name}")
    fake = FakeModal()
    fake.sandboxes = sandboxes
    return fake


def _payload(spec, pool="h100"):
    return lease_payload(Lease(job_id=spec.id, attempt=1, worker_id="dispatcher", pool=pool, deadline=0.0,
                               spec=spec))


def _spawner(store):
    return ModalSpawner("golfq", images=EnvironmentImages(modal_app.pool_image, modal_app.with_source,
                                                          store.get_script),
                        sandbox_options=modal_app.sandbox_options, sandbox_command=modal_app.SANDBOX_COMMAND)


def test_a_record_folder_runs_in_a_sandbox_of_its_own_image_layered_on_the_pools(cloud, tmp_path):
    store = cloud.broker()
    item = prepare({"code": str(code_folder(tmp_path / "rec", requirements=RECORD_REQUIREMENTS,
                                            files={"golfq.toml": RECORD_TOML})), "pool": "h100"})
    store.put_script(item.script)
    spawner = _spawner(store)
    assert spawner.spawn("run_h100", _payload(item.spec), 2400) == "sb-recorded"
    (sandbox,) = cloud.sandboxes
    assert sandbox["gpu"] == "H100!" and sandbox["timeout"] == 2400 and sandbox["volumes"] is modal_app.VOLUMES
    assert sandbox["args"][:3] == modal_app.SANDBOX_COMMAND and sandbox["app"] == "app:golfq"
    steps = layers(sandbox["image"])
    pool = layers(modal_app.pool_image)
    assert steps[:len(pool)] == pool  # the pool's image, unchanged, underneath
    assert steps[-1] == ["MOUNT"]  # golfq's source last, over the environment
    ours = [command for layer in steps[len(pool):] for command in layer]
    assert "RUN apt-get install -y lrzip" in ours
    (install,) = [c for c in ours if "uv pip install" in c and "torch==2.9.1+cu128" in c]
    # the pin is honoured: installed into the image's Python over the pool's torch, from PyTorch's cu128 index
    assert "--extra-index-url https://download.pytorch.org/whl/cu128" in install and "brotli>=1.1" in install
    assert f"RUN {FA3}" in ours
    assert any("GOLFQ_ENV_PROVIDED" in c for c in ours)


def test_one_image_per_environment_and_none_for_a_folder_without_one(cloud, tmp_path):
    store = cloud.broker()
    first = prepare({"code": str(code_folder(tmp_path / "a", requirements=RECORD_REQUIREMENTS)), "pool": "h100"})
    other_code = prepare({"code": str(code_folder(tmp_path / "b", requirements=RECORD_REQUIREMENTS,
                                                  files={"notes.md": "another record"})), "pool": "h100"})
    plain = prepare({"code": str(code_folder(tmp_path / "c", requirements=None)), "pool": "h100"})
    for item in (first, other_code, plain):
        store.put_script(item.script)
    spawner = _spawner(store)
    spawned_calls = []

    class PoolFunction:
        def spawn(self, payload):
            spawned_calls.append(payload)
            return type("Call", (), {"object_id": "fc-pool"})()

        def with_options(self, **options):
            return self

    spawner._functions["run_h100"] = PoolFunction()
    assert first.spec.id != other_code.spec.id
    first_image, second_image = (spawner.own_image(_payload(i.spec)) for i in (first, other_code))
    assert first_image is second_image  # the same environment: one image, built once by Modal and reused
    assert spawner.spawn("run_h100", _payload(plain.spec), None) == "fc-pool" and len(spawned_calls) == 1


def test_inside_its_image_the_runner_builds_nothing(broker, tmp_path, monkeypatch):  # noqa: F811
    item = prepare({"code": str(code_folder(tmp_path / "rec", requirements=f"{PACKAGE}==1.0.0\n",
                                            script="import os\nprint('final_int8_zlib_roundtrip_exact "
                                                   "val_loss:2.0 val_bpb:1.5')\n")), "pool": "cpu"})
    from golfq.workers.codedir import pack_environment

    key = pack_environment(item.script).key
    monkeypatch.setenv("GOLFQ_ENV_PROVIDED", key)
    monkeypatch.setenv("GOLFQ_ENV_NO_INDEX", "1")  # nothing could be installed: the image has it all
    monkeypatch.setenv("GOLFQ_ENV_DIR", str(tmp_path / "envs"))
    broker.put_script(item.script)
    broker.submit([item.spec])
    result = run_lease(broker, broker.claim("cpu", "w", lease_seconds=60), work_root=tmp_path / "runs")
    assert result.succeeded and result.environment == key, result.error
    assert not (tmp_path / "envs").exists()
    monkeypatch.setenv("GOLFQ_ENV_PROVIDED", "another-environment")  # an image built for something else
    item2 = prepare({"code": str(code_folder(tmp_path / "rec2", requirements=f"{PACKAGE}==1.0.0\n")), "pool": "cpu"})
    broker.put_script(item2.script)
    broker.submit([item2.spec])
    result = run_lease(broker, broker.claim("cpu", "w", lease_seconds=60), work_root=tmp_path / "runs")
    assert result.failure is FailureKind.USER and "uv pip install" in result.error
