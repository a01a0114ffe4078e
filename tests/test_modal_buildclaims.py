"""Made data on Modal: four containers, each with its own view of the data Volume, build it once.

The containers are threads in virtual time (tests/modal_net.py) sharing a stand-in Dict and
Volume behind a network with latency and lost responses; each mounts its own folder, which sees
the others' files only after they commit and it reloads.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import msgspec
import pytest

from golfq.core.job import JobState
from golfq.core.result import FailureKind
from golfq.core.spec import MadeData
from golfq.producer.specfile import prepare
from golfq.workers.buildonce import READY, BuildError, build_once
from golfq.workers.codedir import MADE_DIR, ensure_made_data
from golfq.workers.modal.buildclaims import FAILURE_HOLD_SECONDS, Lease, VolumeClaims
from golfq.workers.runner import run_lease
from tests.envs_helpers import code_folder
from tests.golfq_helpers import broker  # noqa: F401 (fixture)
from tests.modal_fakes import FakeDict
from tests.modal_net import Network, VirtualClock
from tests.modal_volume import FakeVolume, VolumeView

CONTAINERS = 4
LEASE = 60.0


class Workspace:
    def __init__(self, tmp_path: Path, seed: int = 0, lost: float = 0.1) -> None:
        self.tmp_path = tmp_path
        self.clock = VirtualClock()
        self.net = Network(latency=0.03, lost_responses=lost, lost_requests=lost / 4, seed=seed, clock=self.clock)
        self.claims = FakeDict("golfq-builds", clock=self.clock, net=self.net)
        self.volume = FakeVolume(self.net)

    def container(self, name: str) -> tuple[VolumeView, VolumeClaims]:
        view = self.volume.mount(self.tmp_path / name / "data")
        return view, VolumeClaims(self.claims, view, owner=name, lease_seconds=LEASE, poll_seconds=2.0,
                                  clock=self.clock, sleep=self.clock.sleep, wall=self.clock)

    def race(self, run, names: list[str]) -> dict[str, object]:
        """run(name, view, guard) in each container at once; what each returned or raised."""
        outcomes: dict[str, object] = {}
        containers = {name: self.container(name) for name in names}
        self.net.plan(*("response", "ok", "ok", "ok") * 4)  # lost answers among the first claims: retried puts

        def one(name: str) -> None:
            try:
                outcomes[name] = run(name, *containers[name])
            except BaseException as error:  # noqa: BLE001 - the outcome under test
                outcomes[name] = error

        threads = [self.clock.start(one, name, name=name) for name in names]
        for thread in threads:
            thread.join(120)
        assert not any(t.is_alive() for t in threads), outcomes
        return outcomes


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "make.sh").write_text('echo run >> "$COUNTER"\nsleep 0.5\nmkdir "$GOLFQ_DATA_OUT/shards"\n'
                                    'printf "$VOCAB" > "$GOLFQ_DATA_OUT/shards/train_000.bin"\n')
    return folder


def _names(count: int = CONTAINERS) -> list[str]:
    return [f"container{i}" for i in range(count)]


@pytest.mark.parametrize("seed", [0, 1])
def test_four_containers_make_the_data_once_and_all_read_it(tmp_path, seed):
    space = Workspace(tmp_path, seed)
    counter = tmp_path / "counter.txt"
    make = MadeData(command="sh make.sh", inputs={"VOCAB": "8192", "COUNTER": str(counter)},
                    paths={"DATA_PATH": "shards"})
    folder = _folder(tmp_path)

    def run(name: str, view: VolumeView, guard: VolumeClaims) -> dict[str, str]:
        return ensure_made_data(make, "sha256:code", folder, view.root, tmp_path / f"{name}.log", None, guard)

    outcomes = space.race(run, _names())
    assert counter.read_text() == "run\n"
    for name, paths in outcomes.items():
        assert isinstance(paths, dict), paths
        data = Path(paths["DATA_PATH"])
        assert data.is_relative_to(tmp_path / name)  # each container reads its own view of the Volume
        assert (data / "train_000.bin").read_text() == "8192"
    made = f"{MADE_DIR}/{make.key('sha256:code')}"
    assert set(space.volume.files) == {f"{made}/shards/train_000.bin", f"{made}/{READY}"}  # no builder's own folder
    assert space.net.responses_lost > 0  # the claims held through retried calls


@pytest.mark.parametrize("lost", [0.1, 0.25])  # at 25%, some calls fail after all the client's retries
def test_a_builder_that_dies_mid_build_is_taken_over_by_exactly_one_other(tmp_path, lost):
    space = Workspace(tmp_path, seed=3, lost=lost)
    builders: list[str] = []
    lock = threading.Lock()

    class ContainerDied(BaseException):
        pass

    def run(name: str, view: VolumeView, guard: VolumeClaims) -> tuple[bool, str]:
        def build(into: Path) -> str:
            with lock:
                builders.append(name)
                first = len(builders) == 1
            space.clock.sleep(30.0)
            if first:
                raise ContainerDied()  # its renewals stop with it; the claim stays until its lease runs out
            space.clock.sleep(5 * LEASE)  # longer than a lease: the renewals keep the others waiting
            (into / "tok.model").write_text("tok")
            return "made"
        return build_once(view.root / MADE_DIR / "abc", build, guard)

    started = space.clock()
    outcomes = space.race(run, _names())
    assert len(builders) == 2 and len(set(builders)) == 2, builders
    dead, heir = builders
    assert isinstance(outcomes.pop(dead), ContainerDied)
    assert outcomes[heir] == (True, "made")
    assert all(outcomes[name] == (False, "made") for name in outcomes if name != heir), outcomes
    for name in outcomes:
        assert (tmp_path / name / "data" / MADE_DIR / "abc" / "tok.model").read_text() == "tok"
    assert space.clock() - started >= LEASE + 5 * LEASE  # the takeover waited out the dead builder's lease
    assert space.net.failed > 0 or lost < 0.25  # calls unanswered after every retry: the waiters polled on


def test_a_failing_data_command_fails_every_waiting_container_with_its_message(tmp_path):
    space = Workspace(tmp_path, seed=5)
    counter = tmp_path / "counter.txt"
    make = MadeData(command='echo run >> "$COUNTER"; sleep 0.5; echo "no tokenizer here" >&2; exit 3',
                    inputs={"COUNTER": str(counter)}, paths={"DATA_PATH": "shards"})

    def run(name: str, view: VolumeView, guard: VolumeClaims) -> dict[str, str]:
        return ensure_made_data(make, "sha256:code", tmp_path, view.root, tmp_path / f"{name}.log", None, guard)

    outcomes = space.race(run, _names())
    assert counter.read_text() == "run\n"
    for error in outcomes.values():
        assert isinstance(error, BuildError), outcomes
        assert str(error) == "data command exited with code 3: no tokenizer here"
        assert "no tokenizer here" in error.tail
    assert all("no tokenizer here" in (tmp_path / f"{name}.log").read_text() for name in outcomes)  # `golfq logs`
    assert not space.volume.files  # nothing half-made was published
    # A job that comes while the failure is fresh fails with it; one that comes later builds afresh.
    assert isinstance(space.race(run, ["soon"])["soon"], BuildError)
    assert counter.read_text() == "run\n"
    space.clock.advance(FAILURE_HOLD_SECONDS)
    assert isinstance(space.race(run, ["later"])["later"], BuildError)
    assert counter.read_text() == "run\nrun\n"


def test_the_pool_functions_claim_made_data_in_the_apps_dict_on_the_data_volume():
    import modal

    from golfq.workers.modal import app

    lease = type("Lease", (), {"job_id": "j" * 20, "attempt": 2})()
    first, second = app.data_claims(lease), app.data_claims(lease)
    assert isinstance(first, VolumeClaims) and isinstance(first.claims, modal.Dict)
    assert first.volume is app.data_volume
    assert first.owner != second.owner  # two attempts in one container never take each other's claim


# -- one container's runner, after another container built (or failed to build) the data ------------

READS_DATA = """\
import os, pathlib
assert pathlib.Path(os.environ["DATA_PATH"], "train_000.bin").read_text() == "8192"
print("final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.25")
"""


def _one_container_job(broker, tmp_path: Path, monkeypatch, command: str):
    monkeypatch.setenv("GOLFQ_DATA_DIR", str(tmp_path / "data"))
    folder = code_folder(tmp_path / "rec", requirements=None, script=READS_DATA)
    make = {"command": command, "paths": {"DATA_PATH": "shards"}}
    item = prepare({"code": str(folder), "pool": "cpu", "data": {"make": make}})
    broker.put_script(item.script)
    broker.submit([item.spec])
    return item, MadeData(**make).key(item.spec.trainer)


def test_a_job_reads_the_data_another_container_published(broker, tmp_path, monkeypatch):
    item, key = _one_container_job(broker, tmp_path, monkeypatch, "echo ran > ran.txt")
    volume = FakeVolume()
    here = volume.mount(tmp_path / "data")  # mounted before the other container commits: only a reload shows it
    elsewhere = volume.mount(tmp_path / "elsewhere")
    (elsewhere.root / MADE_DIR / key / "shards").mkdir(parents=True)
    (elsewhere.root / MADE_DIR / key / "shards" / "train_000.bin").write_text("8192")
    (elsewhere.root / MADE_DIR / key / READY).write_text("made")
    elsewhere.commit()
    assert not (here.root / MADE_DIR).exists()
    guard = VolumeClaims(FakeDict("golfq-builds"), here, owner="here", poll_seconds=0.05)
    result = run_lease(broker, broker.claim("cpu", "w", lease_seconds=60), work_root=tmp_path / "runs",
                       data_guard=guard)
    assert result.val_bpb == 1.25, result.error
    assert not list((tmp_path / "runs").rglob("ran.txt"))  # the command did not run here


def test_a_job_fails_as_user_with_the_build_another_container_failed(broker, tmp_path, monkeypatch):
    item, key = _one_container_job(broker, tmp_path, monkeypatch, "echo ran > ran.txt")
    claims = FakeDict("golfq-builds")
    claims.put(f"made/{key}/0", msgspec.msgpack.encode(Lease(
        owner="elsewhere", deadline=time.time(), error="data command exited with code 3: no tokenizer here",
        tail="reading docs\nno tokenizer here", ended=time.time())))
    guard = VolumeClaims(claims, FakeVolume().mount(tmp_path / "data"), owner="here", poll_seconds=0.05)
    result = run_lease(broker, broker.claim("cpu", "w", lease_seconds=60), work_root=tmp_path / "runs",
                       data_guard=guard)
    assert result.failure is FailureKind.USER
    assert result.error == "data command exited with code 3: no tokenizer here"
    assert "no tokenizer here" in result.log_tail and "reading docs" in Path(result.log_path).read_text()
    assert broker.get(item.spec.id).state is JobState.FAILED
    assert not list((tmp_path / "runs").rglob("ran.txt"))
