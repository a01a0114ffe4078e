"""`golfq data ...`: prepare training data for the built-in trainer.

The root `golfq` CLI mounts `data_app`; this module only defines the sub-commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

data_app = typer.Typer(help="Prepare tokenized data for the built-in Parameter Golf trainer.", no_args_is_help=True)


@data_app.callback()
def _data() -> None:
    """Prepare tokenized data for the built-in Parameter Golf trainer."""


@data_app.command("prepare")
def prepare_command(
    source: Annotated[str, typer.Option(help="stdlib, fineweb, a directory of .txt files, or a .jsonl file with a 'text' field.")] = "stdlib",
    vocab: Annotated[int, typer.Option(help="Tokenizer vocabulary size (VOCAB_SIZE).")] = 1024,
    out: Annotated[Optional[Path], typer.Option(help="Data root; default $GOLFQ_DATA_DIR or ~/.cache/golfq/data.")] = None,
    repo_dir: Annotated[Optional[Path], typer.Option(help="fineweb only: a local copy of the hub dataset repo instead of downloading.")] = None,
    train_shards: Annotated[int, typer.Option(help="fineweb only: how many 100M-token train shards to fetch.")] = 80,
) -> None:
    """Tokenize SOURCE (training a SentencePiece BPE tokenizer) or fetch FineWeb, and print DATA_PATH and TOKENIZER_PATH."""
    from workers.golf.prepare import PrepareError, prepare
    from workers.golf.shards import ShardError

    try:
        prepared = prepare(source, vocab, out, repo_dir=repo_dir, train_shards=train_shards)
    except (PrepareError, ShardError, OSError) as error:
        typer.echo(f"golfq data prepare: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", err=True)
        raise typer.Exit(2) from None
    stats = prepared.manifest.get("stats", {})
    state = "reused" if prepared.reused else "prepared"
    typer.echo(f"{state} {prepared.dataset}: {stats.get('files_train')} train / {stats.get('files_val')} val shards")
    typer.echo(f"DATA_PATH={prepared.data_path}")
    typer.echo(f"TOKENIZER_PATH={prepared.tokenizer_path}")
    typer.echo(f"VOCAB_SIZE={prepared.vocab_size}")
