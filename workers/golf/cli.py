"""`golfq data ...`: prepare training data for the built-in trainer, here or on Modal.

The root `golfq` CLI mounts `data_app`; this module only defines the sub-commands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

data_app = typer.Typer(help="Prepare tokenized data for the built-in Parameter Golf trainer.", no_args_is_help=True)

PLACES = ("local", "modal")
REMOTE_SOURCES = ("stdlib", "fineweb")  # a local path means nothing inside Modal


@data_app.callback()
def _data() -> None:
    """Prepare tokenized data for the built-in Parameter Golf trainer."""


def _exit(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"golfq data prepare: error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def _why(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error).strip() else type(error).__name__


@data_app.command("prepare")
def prepare_command(
    source: Annotated[str, typer.Option(help="stdlib, fineweb, a directory of .txt files, or a .jsonl file with a 'text' field.")] = "stdlib",
    vocab: Annotated[int, typer.Option(help="Tokenizer vocabulary size (VOCAB_SIZE).")] = 1024,
    out: Annotated[Optional[Path], typer.Option(help="Data root; default $GOLFQ_DATA_DIR or ~/.cache/golfq/data.")] = None,
    repo_dir: Annotated[Optional[Path], typer.Option(help="fineweb only: a local copy of the hub dataset repo instead of downloading.")] = None,
    train_shards: Annotated[int, typer.Option(help="fineweb only: how many 100M-token train shards to fetch.")] = 80,
    on: Annotated[str, typer.Option("--on", help="local (this machine) or modal (the deployed app's data Volume).")] = "local",
    app: Annotated[str, typer.Option("--app", envvar="GOLFQ_MODAL_APP", help="--on modal: the deployed app's name.")] = "golfq",
    env: Annotated[Optional[str], typer.Option("--env", envvar="GOLFQ_MODAL_ENV", help="--on modal: the Modal environment.")] = None,
) -> None:
    """Tokenize SOURCE (training a SentencePiece BPE tokenizer) or fetch FineWeb, and print DATA_PATH and TOKENIZER_PATH."""
    if on not in PLACES:
        _exit(f"--on must be {' or '.join(PLACES)}, got {on!r}")
    if train_shards < 1:
        _exit(f"--train-shards must be at least 1, got {train_shards}")
    if on == "modal":
        if out is not None or repo_dir is not None:
            _exit("--out and --repo-dir are for --on local; on Modal the data goes to the app's data Volume")
        if source not in REMOTE_SOURCES:
            _exit(f"--on modal takes --source {' or '.join(REMOTE_SOURCES)}, got {source!r} (local files are not visible there)")
        typer.echo(_prepare_on_modal(source, vocab, train_shards, app, env))
        return
    from workers.golf.prepare import PrepareError, prepare
    from workers.golf.shards import ShardError

    root = out if out is not None else Path(os.environ.get("GOLFQ_DATA_DIR") or Path.home() / ".cache" / "golfq" / "data")
    try:
        prepared = prepare(source, vocab, root, repo_dir=repo_dir, train_shards=train_shards)
    except (PrepareError, ShardError, OSError) as error:
        _exit(_why(error))
    stats = prepared.manifest.get("stats", {})
    state = "reused" if prepared.reused else "prepared"
    typer.echo(f"{state} {prepared.dataset}: {stats.get('files_train')} train / {stats.get('files_val')} val shards")
    typer.echo(f"DATA_PATH={prepared.data_path}")
    typer.echo(f"TOKENIZER_PATH={prepared.tokenizer_path}")
    typer.echo(f"VOCAB_SIZE={prepared.vocab_size}")


def _prepare_on_modal(source: str, vocab: int, train_shards: int, app: str, env: str | None) -> str:
    """Run the deployed app's prepare_data; setup problems (no modal, not logged in, not deployed) exit 2."""
    try:
        from workers.modal_cli import prepare_on_modal

        return prepare_on_modal(source, vocab, train_shards, app=app, env=env)
    except ImportError as error:
        _exit(f"--on modal needs the modal package (pip install 'golfq[modal]'): {_why(error)}")
    except Exception as error:
        kind = type(error).__name__
        if kind == "AuthError":
            _exit(f"not logged in to Modal (run `modal token new`): {_why(error)}")
        if kind == "NotFoundError":
            _exit(f"app {app!r} is not deployed (run `golfq modal deploy --app {app}`): {_why(error)}")
        if kind in ("PrepareError", "ShardError"):
            _exit(_why(error))
        _exit(f"on Modal: {kind}: {_why(error)}", code=1)
