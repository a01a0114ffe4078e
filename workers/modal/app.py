"""golfq on Modal: one App with a function per pool, a dispatcher and a data-prep step.

    golfq modal deploy            # once; then everything calls the deployed app by name
    golfq modal prepare           # fill the data Volume with the FineWeb shards
    golfq submit --queue modal://golfq spec.toml

Pools: `run_cpu`, `run_h100` (gpu="H100") and `run_h100x8` (gpu="H100:8", torchrun across
the 8 GPUs inside the one container). Each autoscales from zero, with its own settings
from golfq.workers.modal.config. Their body is the same runner the local fleet uses.
The dispatcher runs every minute and whenever a client kicks it; it claims jobs from
the Dicts and spawns one call per job (golfq.workers.modal.dispatch).

Nothing here runs at import beyond declarations, so tests import this module and
assert what would be deployed.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import modal

from golfq.core.settings import settings
from golfq.workers.modal.call import ContainerLife
from golfq.workers.modal.config import ModalConfig, ModalConfigError, PoolConfig, as_json, load_config

APP_NAME = settings().modal_app
ENVIRONMENT = settings().modal_env
CONFIG: ModalConfig = load_config()
QUEUE_URL = f"modal://{APP_NAME}" + (f"?env={ENVIRONMENT}" if ENVIRONMENT else "")
DATA_MOUNT = "/data"
ARTIFACTS_MOUNT = "/artifacts"
DATA_PREP_TIMEOUT = 4 * 3600
DISPATCH_LISTEN_SECONDS = 20  # after a pass, keep listening on the wake partitions this long
# torch pinned to the version the trainer is tested with (a new minor changes kernels and compile); the rest
# bounded to the major versions tested.
TRAINER_PACKAGES = ("torch==2.13.0", "numpy>=1.26,<3", "sentencepiece>=0.2,<0.3", "zstandard>=0.22,<1",
                    "msgspec>=0.18,<1", "huggingface_hub>=0.24,<3", "packaging>=23,<27")

app = modal.App(APP_NAME)


def local_source_modules() -> list[str]:
    """golfq's packages as the image mounts them. In a checkout golfq/core and golfq/workers are
    links to the repository's folders, which Modal's mount does not follow: name them too."""
    import golfq

    root = Path(golfq.__file__).parent
    return ["golfq", *(f"golfq.{part}" for part in ("core", "workers") if (root / part).is_symlink())]


def with_source(base: modal.Image) -> modal.Image:
    """golfq's source on top, last: a mount layer, so code folders' environments go beneath it."""
    return base.add_local_python_source(*local_source_modules())


# The pool's image without golfq's source: what a code folder's environment is layered on (envimage.py).
pool_image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(*TRAINER_PACKAGES)
    .env({"GOLFQ_DATA_DIR": DATA_MOUNT, "GOLFQ_ARTIFACTS_MOUNT": ARTIFACTS_MOUNT, "PYTHONUNBUFFERED": "1"})
)
image = with_source(pool_image)

data_volume = modal.Volume.from_name(f"{APP_NAME}-data", environment_name=ENVIRONMENT, create_if_missing=True)
artifacts_volume = modal.Volume.from_name(f"{APP_NAME}-artifacts", environment_name=ENVIRONMENT,
                                          create_if_missing=True)
VOLUMES: dict[str | os.PathLike, modal.Volume | modal.CloudBucketMount] = {DATA_MOUNT: data_volume,
                                                                            ARTIFACTS_MOUNT: artifacts_volume}

# What the containers need to find the queue and enforce the caps that were deployed.
RUNTIME_ENV: dict[str, str | None] = {
    "GOLFQ_QUEUE": QUEUE_URL, "GOLFQ_MODAL_APP": APP_NAME, "GOLFQ_MODAL_CONFIG_JSON": as_json(CONFIG),
    **({"GOLFQ_MODAL_ENV": ENVIRONMENT} if ENVIRONMENT else {})}

DECLARED: dict[str, dict] = {}  # function name -> the options it was declared with (asserted by tests)


def pool_options(pool: PoolConfig) -> dict:
    """The decorator options of one pool's function, straight from its config."""
    return {
        "name": pool.function,
        "gpu": pool.gpu,
        "cpu": pool.cpu,
        "memory": pool.memory_mib,
        "min_containers": 0,  # an idle pool costs nothing
        "max_containers": pool.max_containers,
        "buffer_containers": pool.buffer_containers,
        "scaledown_window": pool.scaledown_window,
        "timeout": pool.timeout_seconds,
        "retries": modal.Retries(max_retries=pool.retries, initial_delay=10.0, backoff_coefficient=2.0),
        "volumes": VOLUMES,
    }


def _function(**options):
    DECLARED[options["name"]] = options
    return app.function(image=image, env=RUNTIME_ENV, **options)


def _pool_function(pool: str):
    return _function(**pool_options(CONFIG.pools[pool]))


# -- the pool functions' body ----------------------------------------------------------------


def open_job_broker():
    """The queue the containers report to (tests replace this with an in-memory broker)."""
    from golfq.core.backends import open_broker

    return open_broker(QUEUE_URL)


# This container's billing as Modal sees it: from boot (a cold start) until it scales down.
CONTAINER = ContainerLife(time.time(), os.environ.get("MODAL_TASK_ID", "local"))


def commit_artifacts() -> None:
    """Publish what this container wrote to the artifacts Volume (after every checkpoint, and at the end)."""
    if not modal.is_local():
        artifacts_volume.commit()


def enter_container():
    """In a container: see what other containers committed to the Volume, and take SIGTERM (a shutdown, as
    with a preemption) the way SIGINT goes, so the training process gets its grace to save and the Volume its
    commit. Returns the SIGTERM handler to put back, if one was replaced."""
    if modal.is_local():
        return None
    try:
        artifacts_volume.reload()
    except Exception as error:  # noqa: BLE001 - a stale view only means going on from an older checkpoint
        print(f"golfq: artifacts Volume not reloaded: {error}", file=sys.stderr)
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, signal.default_int_handler)


def data_claims(lease):
    """Who makes a spec's data among containers: a claim in the `APP-builds` Dict, the output on the data Volume."""
    from golfq.workers.modal.buildclaims import VolumeClaims

    claims = modal.Dict.from_name(f"{APP_NAME}-builds", environment_name=ENVIRONMENT, create_if_missing=True)
    owner = f"{CONTAINER.container}-{lease.job_id[:12]}-{lease.attempt}-{os.urandom(3).hex()}"
    return VolumeClaims(claims, data_volume, owner)


def run_job(payload: bytes) -> str:
    """One spawned call: the lease the dispatcher claimed, run end to end by the shared runner."""
    from golfq.workers.modal.call import serve_call
    from golfq.workers.modal.dispatch import read_lease
    from golfq.workers.runner import run_claimed

    lease = read_lease(payload)
    broker = open_job_broker()
    work_root = (settings().artifacts_mount or Path(ARTIFACTS_MOUNT)) / "runs"

    def run() -> str:
        return run_claimed(broker, lease, work_root=work_root, heartbeat_seconds=CONFIG.heartbeat_seconds,
                           lease_seconds=CONFIG.lease_seconds, on_checkpoint=commit_artifacts,
                           worker_id=f"modal/{lease.pool}/{CONTAINER.container}",
                           data_guard=None if modal.is_local() else data_claims(lease)).status

    # Modal's re-run of this input (after a preemption) brings the same input id; a duplicated spawn does not.
    # A Sandbox (a code folder's own image) has no input: its task id is its own, and it is never re-run.
    token = (None if modal.is_local() else modal.current_input_id() or os.environ.get("MODAL_TASK_ID")) or "local"
    sigterm = enter_container()
    try:
        outcome = serve_call(broker, lease, token=token, life=CONTAINER, lease_seconds=CONFIG.lease_seconds, run=run)
    finally:
        broker.close()
        commit_artifacts()  # logs, artifacts and checkpoints outlive the container, even one going down
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    # The result's commit kicked the dispatcher (unless one was listening): the freed slot is filled now.
    return outcome


POOL_FUNCTION_NAMES = ("cpu", "h100", "h100x8")  # the pools declared below, one function each
if set(CONFIG.pools) - set(POOL_FUNCTION_NAMES):
    raise ModalConfigError(f"modal config: no Modal function for pool(s) "
                           f"{', '.join(sorted(set(CONFIG.pools) - set(POOL_FUNCTION_NAMES)))}; "
                           f"declare one in workers/modal_app.py")


@_pool_function("cpu")
def run_cpu(payload: bytes) -> str:
    return run_job(payload)


@_pool_function("h100")
def run_h100(payload: bytes) -> str:
    return run_job(payload)


@_pool_function("h100x8")
def run_h100x8(payload: bytes) -> str:
    # The runner starts `python -m torch.distributed.run --standalone --nproc-per-node=8` for this pool.
    return run_job(payload)


def sandbox_options(function: str) -> dict:
    """A Sandbox that stands in for a call of this pool function, in a code folder's own image."""
    declared = DECLARED[function]
    # A Sandbox imports from its working directory: /root, where the image puts golfq's source.
    return {"gpu": declared["gpu"], "cpu": declared["cpu"], "memory": declared["memory"], "volumes": VOLUMES,
            "env": {**RUNTIME_ENV, "PYTHONPATH": "/root"}, "workdir": "/root", "timeout": declared["timeout"]}


SANDBOX_COMMAND = ("python", "-m", "golfq.workers.modal.app")  # + the lease payload, base64: run_job in a Sandbox


# -- the dispatcher ----------------------------------------------------------------------------


def dispatch_once(listen_seconds: float = 0.0, spawner=None, broker=None):
    """One dispatcher run: reap, charge ended calls, claim and spawn within the caps, snapshot."""
    from golfq.core.backends.modal.broker import ModalBroker
    from golfq.workers.modal.dispatch import Dispatcher, ModalSpawner
    from golfq.workers.modal.envimage import EnvironmentImages

    broker = broker or ModalBroker(QUEUE_URL, kick=lambda: None)
    spawner = spawner or ModalSpawner(APP_NAME, ENVIRONMENT,
                                      images=EnvironmentImages(pool_image, with_source, broker.get_script),
                                      sandbox_options=sandbox_options, sandbox_command=SANDBOX_COMMAND)
    return Dispatcher(broker, spawner, CONFIG).serve(listen_seconds)


@_function(name="dispatch", schedule=modal.Period(seconds=CONFIG.dispatch_every_seconds), max_containers=1,
           timeout=300, retries=0)
def dispatch() -> str:
    reports = dispatch_once(DISPATCH_LISTEN_SECONDS)
    spawned = sum(len(p.spawned) for r in reports for p in r.pools.values())
    reaped = sum(len(r.reaped) for r in reports)
    return f"{len(reports)} passes: spawned {spawned}, reaped {reaped}"


# -- data preparation --------------------------------------------------------------------------


@_function(name="prepare_data", volumes={DATA_MOUNT: data_volume}, cpu=4.0, memory=16384, timeout=DATA_PREP_TIMEOUT)
def prepare_data(source: str = "fineweb", vocab: int = 1024, train_shards: int = 80, variant: str | None = None) -> str:
    """Fill the data Volume: prepare on local disk (file locks and hard links), then copy over.

    `golfq data prepare` runs as a process of its own, as training does: the execution side
    never imports training code."""
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run([sys.executable, "-m", "golfq", "data", "prepare", "--source", source, "--vocab",
                               str(vocab), "--train-shards", str(train_shards), "--out", scratch,
                               *(["--variant", variant] if variant else [])],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"data prepare failed: {(done.stderr or done.stdout).strip()[-2000:]}")
        for part in ("datasets", "tokenizers"):
            shutil.copytree(Path(scratch) / part, Path(DATA_MOUNT) / part, dirs_exist_ok=True)
    data_volume.commit()
    return f"{done.stdout.strip().splitlines()[-1] if done.stdout.strip() else 'prepared'} on {APP_NAME}-data"


if __name__ == "__main__":  # SANDBOX_COMMAND: one attempt of a code folder, inside its own image
    print(run_job(base64.b64decode(sys.argv[1])))
