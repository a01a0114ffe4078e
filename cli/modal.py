"""`golfq modal ...`: deploy the app, watch its pools, prepare data, debug a failed job.

Every command talks to the *deployed* app by name (concurrent `modal run`s of one app
tear each other down), so deploy first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer

from golfq.core.errors import EXIT_JOB_FAILED, GolfqError
from golfq.core.job import Job, Lease
from golfq.core.settings import settings
from golfq.workers.modal.config import ModalConfig, load_config

if TYPE_CHECKING:
    from golfq.core.backends.modal.broker import ModalBroker

modal_cli = typer.Typer(name="modal", help="Run golfq on Modal: deploy, status, prepare, debug.",
                        no_args_is_help=True, add_completion=False)

AppOption = Annotated[
    str | None,
    typer.Option("--app", metavar="APP", show_default=False,
                 help="Modal app name, queue modal://APP (default: $GOLFQ_MODAL_APP, else golfq)"),
]
EnvOption = Annotated[
    str | None,
    typer.Option("--env", metavar="ENV", show_default=False, help="Modal environment (default: $GOLFQ_MODAL_ENV)"),
]
DEBUG_WORKDIR = "/root/debug"


class PoolStatus(msgspec.Struct, frozen=True):
    pool: str
    function: str
    queued: int
    leased: int
    backlog: int  # calls spawned but not yet started (waiting for a container)
    containers: int  # running containers, warm idle ones included
    running_inputs: int
    draining: bool
    waiting: int = 0  # leased jobs whose call waits for a GPU (never a failure)
    longest_wait: float = 0.0  # seconds the oldest of them has waited
    billed_gpu_hours: float = 0.0  # charged by the dispatcher: cold starts, runs, scale-down


def _app_and_env(app: str | None, env: str | None) -> tuple[str, str | None]:
    return app or settings().modal_app, env or settings().modal_env


def queue_url(app: str, env: str | None) -> str:
    return f"modal://{app}" + (f"?env={env}" if env else "")


def modal_failure(error: BaseException, app: str) -> GolfqError:
    """One line for a failure talking to Modal: setup problems exit 2, anything else 1."""
    if isinstance(error, GolfqError):
        return error
    kind = type(error).__name__
    why = str(error).strip().split("\n", 1)[0] or kind
    if isinstance(error, ImportError):
        return GolfqError(f"modal: needs the modal package (pip install -e '.[modal]' in golfq's checkout): {why}")
    if kind == "AuthError":
        return GolfqError(f"modal: not logged in to Modal (run `modal token new`): {why}")
    if kind == "NotFoundError":
        return GolfqError(f"modal: app {app!r} is not deployed (run `golfq modal deploy --app {app}`): {why}")
    if kind in ("PrepareError", "ShardError"):  # the trainer's own errors, raised inside the app
        return GolfqError(f"modal: {why}")
    return GolfqError(f"modal: {kind}: {why}", exit_code=EXIT_JOB_FAILED)


@contextmanager
def talking_to(app: str) -> Iterator[None]:
    try:
        yield
    except Exception as error:  # noqa: BLE001 - Modal's client raises its own exception types, and gRPC's
        raise modal_failure(error, app) from None


def _select(app: str, env: str | None, config: Path | None = None) -> None:
    """Point golfq.workers.modal.app at this app before it is imported (its declarations read these)."""
    os.environ["GOLFQ_MODAL_APP"] = app
    if env:
        os.environ["GOLFQ_MODAL_ENV"] = env
    if config is not None:
        os.environ["GOLFQ_MODAL_CONFIG"] = str(config)


@modal_cli.command()
def deploy(
    app: AppOption = None,
    env: EnvOption = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", help="Pool settings (TOML), see docs/modal.md."),
    ] = None,
) -> None:
    """Deploy (or update) the app: pool functions, dispatcher, data prep, Volumes."""
    app, env = _app_and_env(app, env)
    _select(app, env, config)
    with talking_to(app):
        import modal

        from golfq.workers.modal import app as modal_app

        with modal.enable_output():
            modal_app.app.deploy(name=app, environment_name=env)
    print(f"deployed {app}; submit with --queue {queue_url(app, env)}")


def pool_status(stats_of: Callable[[str], Any], broker: ModalBroker, config: ModalConfig) -> list[PoolStatus]:
    """Per pool: the queue's view (queued, leased, waiting for a GPU, billed) beside the function's own stats."""
    from golfq.core.backends.modal.usage import waiting_for_capacity

    counts = broker.stats().pools
    state, now = broker.view(), broker.clock()
    waits = waiting_for_capacity(state.calls)
    rows = []
    for name, pool in config.pools.items():
        live = stats_of(pool.function)
        mine = counts.get(name)
        since = waits.get(name, [])
        usage = state.usage.get(name)
        rows.append(PoolStatus(pool=name, function=pool.function, queued=mine.queued if mine else 0,
                               leased=mine.leased if mine else 0, backlog=live.backlog,
                               containers=live.num_total_runners, running_inputs=live.num_running_inputs,
                               draining=bool(mine and mine.draining), waiting=len(since),
                               longest_wait=max((now - t for t in since), default=0.0),
                               billed_gpu_hours=usage.gpu_seconds / 3600 if usage else 0.0))
    return rows


def snapshot_line(broker: ModalBroker) -> str:
    """Where the log is and how old its newest snapshot is: what survives Modal's 7-day idle expiry."""
    state, ptr = broker.view(), broker.snapshot_info()
    if ptr is None or ptr.pos == 0:
        return f"log entry {state.pos} (generation {state.gen}); no snapshot yet"
    age = max(broker.clock() - ptr.ts, 0.0)
    return (f"log entry {state.pos} (generation {state.gen}); last snapshot at entry {ptr.pos}, "
            f"{state.pos - ptr.pos} behind, written {age / 60:.0f} min ago")


@modal_cli.command()
def status(app: AppOption = None, env: EnvOption = None) -> None:
    """Per pool: queued and leased jobs, spawned calls waiting, running containers."""
    app, env = _app_and_env(app, env)
    with talking_to(app):
        import modal

        from golfq.core.backends.modal.broker import ModalBroker

        broker = ModalBroker(queue_url(app, env), kick=lambda: None)
        rows = pool_status(lambda fn: modal.Function.from_name(app, fn, environment_name=env).get_current_stats(),
                           broker, load_config())
        print(snapshot_line(broker))
    print(f"{'pool':<8} {'queued':>6} {'leased':>6} {'waiting':>7} {'backlog':>7} {'containers':>10} {'running':>7} "
          f"{'billed GPU-h':>12}")
    for r in rows:
        flag = "  (draining)" if r.draining else ""
        wait = f"  (longest wait for a GPU {r.longest_wait / 60:.0f} min)" if r.waiting else ""
        print(f"{r.pool:<8} {r.queued:>6} {r.leased:>6} {r.waiting:>7} {r.backlog:>7} {r.containers:>10} "
              f"{r.running_inputs:>7} {r.billed_gpu_hours:>12.2f}{flag}{wait}")


def prepare_on_modal(source: str = "fineweb", vocab: int = 1024, train_shards: int = 80, *, app: str | None = None,
                     env: str | None = None, variant: str | None = None) -> str:
    """Run the deployed app's prepare_data function; what `golfq data prepare --on modal` calls."""
    app, env = _app_and_env(app, env)
    with talking_to(app):
        import modal

        function = modal.Function.from_name(app, "prepare_data", environment_name=env)
        # an app deployed before variants existed takes no variant argument: name it only when asked
        return function.remote(source, vocab, train_shards, **({"variant": variant} if variant else {}))


@modal_cli.command()
def prepare(
    source: Annotated[str, typer.Option("--source", metavar="SOURCE", help="stdlib or fineweb.")] = "fineweb",
    vocab: Annotated[int, typer.Option("--vocab", metavar="N", help="Tokenizer vocabulary size.")] = 1024,
    train_shards: Annotated[
        int,
        typer.Option("--train-shards", metavar="N", help="fineweb: 100M-token train shards."),
    ] = 80,
    app: AppOption = None,
    env: EnvOption = None,
) -> None:
    """Fill the data Volume (tokenizer and shards) from inside Modal."""
    print(prepare_on_modal(source, vocab, train_shards, app=app, env=env))


def sandbox_options(job: Job, app: str) -> dict[str, Any]:
    """What `golfq modal debug` gives the Sandbox: the job's GPU, environment and working directory."""
    from golfq.core.pools import get_pool
    from golfq.workers.golf.prepare import dataset_paths
    from golfq.workers.runner import SCRIPT_NAME, attempt_env, training_command

    pool = load_config().pools[job.pool]
    gpu = pool.gpu[0] if isinstance(pool.gpu, list) else pool.gpu
    lease = Lease(job_id=job.id, attempt=max(job.attempt, 1), worker_id="debug", pool=job.pool, deadline=0.0,
                  spec=job.spec)
    workdir = Path(DEBUG_WORKDIR)
    env = attempt_env(lease, workdir, None, base={})
    data_path, tokenizer_path = dataset_paths(job.spec.data.dataset, job.spec.data.tokenizer, "/data")
    env.update(DATA_PATH=str(data_path), TOKENIZER_PATH=str(tokenizer_path), PYTHONPATH="/root",
               GOLFQ_DATA_DIR="/data", GOLFQ_QUEUE=f"modal://{app}")
    script = None if job.spec.trainer == "builtin" else workdir / SCRIPT_NAME
    setup = f"mkdir -p {workdir}/artifacts"
    if job.spec.is_code_folder:  # the pack is a plain tar of regular files (golfq.producer.codefolder)
        script = workdir / job.spec.entry
        setup += f" && tar -xf /artifacts/scripts/{job.spec.script_sha256}.py -C {workdir}"
    elif script is not None:
        setup += f" && cp /artifacts/scripts/{job.spec.script_sha256}.py {script}"
    command = training_command(script, max(1, get_pool(job.pool).gpus), python="python")
    return {"gpu": gpu, "env": env, "setup": setup, "command": command, "timeout_seconds": pool.timeout_seconds}


@modal_cli.command()
def debug(
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    app: AppOption = None,
    env: EnvOption = None,
    hours: Annotated[float, typer.Option("--hours", metavar="HOURS", help="How long the Sandbox lives.")] = 2.0,
) -> None:
    """Open a Sandbox with the job's image, Volumes, GPU, script and environment in place."""
    app, env = _app_and_env(app, env)
    _select(app, env)
    with talking_to(app):
        import modal

        from golfq.core.backends.modal.broker import ModalBroker
        from golfq.workers.modal import app as modal_app

        job = ModalBroker(queue_url(app, env), kick=lambda: None).get(job_id)
        if job is None:
            raise GolfqError(f"modal debug: job {job_id}: not in {queue_url(app, env)}")
        options = sandbox_options(job, app)
        sandbox = modal.Sandbox.create(
            "bash", "-c", f"{options['setup']} && sleep infinity",
            app=modal.App.lookup(app, create_if_missing=True, environment_name=env), image=modal_app.image,
            volumes=modal_app.VOLUMES, gpu=options["gpu"], env=options["env"], workdir="/root",
            timeout=int(hours * 3600))  # the app's environment is the Sandbox's
    print(f"sandbox {sandbox.object_id} is up with job {job.id}'s setup in {DEBUG_WORKDIR}")
    print(f"  modal shell {sandbox.object_id}")
    print(f"  cd {DEBUG_WORKDIR} && {' '.join(options['command'])}")
    if job.result is not None and job.result.log_path:
        print(f"  last log: {job.result.log_path}")
    print(f"it ends after {hours:g} h; stop it sooner with: "
          f"python -c \"import modal; modal.Sandbox.from_id('{sandbox.object_id}').terminate()\"")
