"""`golfq data prepare`: tokenized data for the built-in trainer, here or in the deployed Modal app."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from golfq.core.errors import GolfqError
from golfq.core.settings import settings

if TYPE_CHECKING:
    from golfq.workers.golf.prepare import PreparedData

data_app = typer.Typer(name="data", help="Prepare tokenized data for the built-in Parameter Golf trainer.",
                  no_args_is_help=True, add_completion=False)

PLACES = ("local", "modal")
REMOTE_SOURCES = ("stdlib", "fineweb")  # a local path means nothing inside Modal


def prepare_here(source: str, vocab: int, out: Path | None = None, *, repo_dir: Path | None = None,
                 train_shards: int = 80, variant: str | None = None, what: str = "data prepare") -> PreparedData:
    """Prepare data on this machine; the trainer's own errors (it cannot import golfq.core) become one line."""
    from golfq.workers.golf.prepare import PrepareError, prepare
    from golfq.workers.golf.shards import ShardError

    try:
        return prepare(source, vocab, out or settings().data_dir, repo_dir=repo_dir, train_shards=train_shards,
                       variant=variant)
    except (PrepareError, ShardError, OSError) as error:
        raise GolfqError(f"{what}: {str(error).strip() or type(error).__name__}") from None


@data_app.callback()
def _data() -> None:
    """Prepare tokenized data for the built-in Parameter Golf trainer."""  # a callback keeps `data` a group of one


@data_app.command("prepare")
def prepare_command(
    source: Annotated[
        str,
        typer.Option(metavar="SOURCE",
                     help="stdlib, fineweb, a directory of .txt files, or a .jsonl file with a 'text' field."),
    ] = "stdlib",
    vocab: Annotated[int, typer.Option(metavar="N", help="Tokenizer vocabulary size (VOCAB_SIZE).")] = 1024,
    out: Annotated[
        Path | None,
        typer.Option(metavar="DIR", show_default=False,
                     help="Data root (default: $GOLFQ_DATA_DIR, else ~/.cache/golfq/data)"),
    ] = None,
    repo_dir: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="fineweb only: a local copy of the hub dataset repo instead of downloading."),
    ] = None,
    train_shards: Annotated[
        int,
        typer.Option(metavar="N", help="fineweb only: how many 100M-token train shards to fetch."),
    ] = 80,
    variant: Annotated[
        str | None,
        typer.Option(metavar="NAME", show_default=False,
                     help="fineweb only: a published tokenizer variant (sp1024, byte260, sp4096, sp8192, "
                          "sp8192_lossless_caps_caseops_v1_reserved; default sp<vocab>)."),
    ] = None,
    on: Annotated[
        str,
        typer.Option("--on", metavar="local|modal",
                     help="local (this machine) or modal (the deployed app's data Volume)."),
    ] = "local",
    app_name: Annotated[
        str | None,
        typer.Option("--app", metavar="APP", show_default=False,
                     help="--on modal: the deployed app's name (default: $GOLFQ_MODAL_APP, else golfq)"),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option("--env", metavar="ENV", show_default=False,
                     help="--on modal: the Modal environment (default: $GOLFQ_MODAL_ENV)"),
    ] = None,
) -> None:
    """Tokenize SOURCE (training a SentencePiece BPE tokenizer) or fetch FineWeb; print DATA_PATH and TOKENIZER_PATH."""
    if on not in PLACES:
        raise GolfqError(f"data prepare: --on must be {' or '.join(PLACES)}, got {on!r}")
    if train_shards < 1:
        raise GolfqError(f"data prepare: --train-shards must be at least 1, got {train_shards}")
    if on == "modal":
        if out is not None or repo_dir is not None:
            raise GolfqError("data prepare: --out and --repo-dir are for --on local; on Modal the data goes to the "
                             "app's data Volume")
        if source not in REMOTE_SOURCES:
            raise GolfqError(f"data prepare: --on modal takes --source {' or '.join(REMOTE_SOURCES)}, got {source!r} "
                             "(local files are not visible there)")
        from golfq.cli.modal import prepare_on_modal

        print(prepare_on_modal(source, vocab, train_shards, app=app_name or settings().modal_app,
                               env=env or settings().modal_env, variant=variant))
        return
    prepared = prepare_here(source, vocab, out, repo_dir=repo_dir, train_shards=train_shards, variant=variant)
    stats = prepared.manifest.get("stats", {})
    state = "reused" if prepared.reused else "prepared"
    print(f"{state} {prepared.dataset}: {stats.get('files_train')} train / {stats.get('files_val')} val shards")
    print(f"DATA_PATH={prepared.data_path}")
    print(f"TOKENIZER_PATH={prepared.tokenizer_path}")
    print(f"VOCAB_SIZE={prepared.vocab_size}")
