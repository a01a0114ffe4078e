"""`golfq modal ...`: deploy the app, watch its pools, prepare data, debug a failed job.

Mounted by ops/cli.py as `golfq modal`. Every command talks to the *deployed* app by
name (concurrent `modal run`s of one app tear each other down), so deploy first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import msgspec
import typer

from golfq.workers.modal.config import ModalConfig, load_config
from golfq.core.broker import Job, Lease

modal_cli = typer.Typer(help="Run golfq on Modal: deploy, status, prepare, debug.", no_args_is_help=True)

AppOption = typer.Option("golfq", "--app", envvar="GOLFQ_MODAL_APP", help="Modal app name (queue modal://APP)")
EnvOption = typer.Option(None, "--env", envvar="GOLFQ_MODAL_ENV", help="Modal environment")
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


def _fail(error: BaseException) -> typer.Exit:
    typer.echo(f"error: {' '.join(str(error).split()) or type(error).__name__}", err=True)
    return typer.Exit(1)


def queue_url(app: str, env: str | None) -> str:
    return f"modal://{app}" + (f"?env={env}" if env else "")


def _select(app: str, env: str | None, config: Path | None = None) -> None:
    """Point golfq.workers.modal.app at this app before it is imported (its declarations read these)."""
    os.environ["GOLFQ_MODAL_APP"] = app
    if env:
        os.environ["GOLFQ_MODAL_ENV"] = env
    if config is not None:
        os.environ["GOLFQ_MODAL_CONFIG"] = str(config)


@modal_cli.command()
def deploy(app: str = AppOption, env: str | None = EnvOption,
           config: Path | None = typer.Option(None, "--config", help="pool settings (TOML), see docs/modal.md")) -> None:
    """Deploy (or update) the app: pool functions, dispatcher, data prep, Volumes."""
    _select(app, env, config)
    try:
        import modal

        from golfq.workers.modal import app as modal_app

        with modal.enable_output():
            modal_app.app.deploy(name=app, environment_name=env)
    except Exception as error:
        raise _fail(error) from None
    typer.echo(f"deployed {app}; submit with --queue {queue_url(app, env)}")


def pool_status(stats_of: Callable[[str], object], broker, config: ModalConfig) -> list[PoolStatus]:
    """Per pool: the queue's view (queued, leased) beside the function's own stats."""
    counts = broker.stats().pools
    rows = []
    for name, pool in config.pools.items():
        live = stats_of(pool.function)
        mine = counts.get(name)
        rows.append(PoolStatus(pool=name, function=pool.function, queued=mine.queued if mine else 0,
                               leased=mine.leased if mine else 0, backlog=live.backlog,
                               containers=live.num_total_runners, running_inputs=live.num_running_inputs,
                               draining=bool(mine and mine.draining)))
    return rows


@modal_cli.command()
def status(app: str = AppOption, env: str | None = EnvOption) -> None:
    """Per pool: queued and leased jobs, spawned calls waiting, running containers."""
    try:
        import modal

        from golfq.core.backends.modal.broker import ModalBroker

        broker = ModalBroker(queue_url(app, env), kick=lambda: None)
        stats_of = lambda fn: modal.Function.from_name(app, fn, environment_name=env).get_current_stats()  # noqa: E731
        rows = pool_status(stats_of, broker, load_config())
    except Exception as error:
        raise _fail(error) from None
    typer.echo(f"{'pool':<8} {'queued':>6} {'leased':>6} {'backlog':>7} {'containers':>10} {'running':>7}")
    for r in rows:
        flag = "  (draining)" if r.draining else ""
        typer.echo(f"{r.pool:<8} {r.queued:>6} {r.leased:>6} {r.backlog:>7} {r.containers:>10} {r.running_inputs:>7}{flag}")


def prepare_on_modal(source: str = "fineweb", vocab: int = 1024, train_shards: int = 80, *, app: str = "golfq",
                     env: str | None = None) -> str:
    """Run the deployed prepare_data function; what `golfq data prepare --on modal` calls."""
    import modal

    return modal.Function.from_name(app, "prepare_data", environment_name=env).remote(source, vocab, train_shards)


@modal_cli.command()
def prepare(source: str = typer.Option("fineweb", "--source"), vocab: int = typer.Option(1024, "--vocab"),
            train_shards: int = typer.Option(80, "--train-shards"), app: str = AppOption,
            env: str | None = EnvOption) -> None:
    """Fill the data Volume (tokenizer and shards) from inside Modal."""
    try:
        typer.echo(prepare_on_modal(source, vocab, train_shards, app=app, env=env))
    except Exception as error:
        raise _fail(error) from None


def sandbox_options(job: Job, app: str) -> dict:
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
    if script is not None:
        setup += f" && cp /artifacts/scripts/{job.spec.script_sha256}.py {script}"
    command = training_command(script, max(1, get_pool(job.pool).gpus), python="python")
    return {"gpu": gpu, "env": env, "setup": setup, "command": command, "timeout_seconds": pool.timeout_seconds}


@modal_cli.command()
def debug(job_id: str, app: str = AppOption, env: str | None = EnvOption,
          hours: float = typer.Option(2.0, "--hours", help="how long the Sandbox lives")) -> None:
    """Open a Sandbox with the job's image, Volumes, GPU, script and environment in place."""
    _select(app, env)
    try:
        import modal

        from golfq.core.backends.modal.broker import ModalBroker
        from golfq.workers.modal import app as modal_app

        job = ModalBroker(queue_url(app, env), kick=lambda: None).get(job_id)
        if job is None:
            raise KeyError(f"job {job_id}: not in {queue_url(app, env)}")
        options = sandbox_options(job, app)
        sandbox = modal.Sandbox.create(
            "bash", "-c", f"{options['setup']} && sleep infinity",
            app=modal.App.lookup(app, create_if_missing=True, environment_name=env), image=modal_app.image,
            volumes=modal_app.VOLUMES, gpu=options["gpu"], env=options["env"], workdir="/root",
            timeout=int(hours * 3600), environment_name=env)
    except Exception as error:
        raise _fail(error) from None
    typer.echo(f"sandbox {sandbox.object_id} is up with job {job.id}'s setup in {DEBUG_WORKDIR}")
    typer.echo(f"  modal shell {sandbox.object_id}")
    typer.echo(f"  cd {DEBUG_WORKDIR} && {' '.join(options['command'])}")
    if job.result is not None and job.result.log_path:
        typer.echo(f"  last log: {job.result.log_path}")
    typer.echo(f"it ends after {hours:g} h; stop it sooner with: "
               f"python -c \"import modal; modal.Sandbox.from_id('{sandbox.object_id}').terminate()\"")
