"""Prepare tokenized data in the challenge's layout.

    OUT/datasets/<dataset>/fineweb_{train,val}_NNNNNN.bin + manifest.json
    OUT/tokenizers/<tokenizer>.model

Sources: `stdlib` (prose shipped with Python, nothing downloaded), a directory of
.txt files, a JSON-lines file with a `text` field, or `fineweb` (the challenge's
own pre-tokenized shards from the Hugging Face hub, or a local copy of that repo,
in one of the published tokenizer variants: FINEWEB_VARIANTS).
A finished dataset has a manifest.json whose `key` names everything that went
into it; a second call with the same inputs returns the cached files.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import random
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golfq.workers.golf.fineweb import (
    MANIFEST_FORMAT,
    PrepareError,
    Variant,
    fetch_fineweb,
    fineweb_variant,
    remove_old_shards,
)
from golfq.workers.golf.shards import write_shard

__all__ = ["PrepareError", "PreparedData", "Variant", "dataset_names", "dataset_paths", "prepare"]

SOURCE_CHOICES = "stdlib, fineweb, a directory of .txt files or a .jsonl file"
SHARD_TOKENS = 10**8
# The challenge's SentencePiece trainer settings (data/download_hf_docs_and_tokenize.py).
TOKENIZER_SETTINGS: dict[str, object] = {
    "model_type": "bpe",
    "character_coverage": 0.999,
    "byte_fallback": True,
    "split_digits": True,
    "normalization_rule_name": "nmt_nfkc",
    "add_dummy_prefix": False,
    "pad_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "unk_id": 3,
    "hard_vocab_limit": False,
}
BOS_ID = 1
# Skipped when collecting stdlib docstrings: tests and vendored third-party code.
STDLIB_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "_vendor"}


@dataclass(frozen=True)
class PreparedData:
    data_path: Path  # the dataset directory: DATA_PATH for the trainer
    tokenizer_path: Path  # the .model file: TOKENIZER_PATH for the trainer
    dataset: str
    tokenizer: str
    vocab_size: int
    manifest: dict
    reused: bool  # True when the cache already held this dataset


def dataset_paths(dataset: str, tokenizer: str, root: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(DATA_PATH, TOKENIZER_PATH) for a dataset and tokenizer under the data root."""
    base = Path(root).expanduser()
    return base / "datasets" / dataset, base / "tokenizers" / f"{tokenizer}.model"


def dataset_names(source: str, vocab: int) -> tuple[str, str]:
    """(dataset, tokenizer) names for a source, mirroring the challenge's naming."""
    if source == "fineweb":
        return f"fineweb10B_sp{vocab}", f"fineweb_{vocab}_bpe"
    if source == "stdlib":
        return f"stdlib_sp{vocab}", f"stdlib_{vocab}_bpe"
    path = Path(source)
    stem = re.sub(r"[^a-z0-9]+", "_", (path.stem if path.is_file() else path.name).lower()).strip("_") or "custom"
    return f"{stem}_sp{vocab}", f"{stem}_{vocab}_bpe"


# ---------------------------------------------------------------- documents


@functools.cache
def stdlib_documents() -> tuple[str, ...]:
    """English prose shipped with every Python, in a fixed order.

    The pydoc topic pages, then one document per standard-library module made
    of its module, class and function docstrings. Modules are parsed, never
    imported, so collecting them has no side effects.
    """
    from pydoc_data.topics import topics

    documents = [topics[name] for name in sorted(topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(_stdlib_sources(stdlib)):
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        docstrings = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node)
                if docstring and len(docstring) >= 40:
                    docstrings.append(docstring)
        if docstrings:
            documents.append("\n\n".join(docstrings))
    return tuple(documents)


def _stdlib_sources(stdlib: Path) -> Iterator[Path]:
    for directory, subdirs, files in os.walk(stdlib):
        subdirs[:] = sorted(d for d in subdirs if d not in STDLIB_SKIP_DIRS and not d.startswith("."))
        for name in files:
            if name.endswith(".py"):
                yield Path(directory) / name


def text_directory_documents(directory: Path) -> list[str]:
    files = sorted(directory.rglob("*.txt"))
    if not files:
        raise PrepareError(f"{directory}: no .txt files found")
    documents = []
    for path in files:
        try:
            documents.append(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            raise PrepareError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return documents


def jsonl_documents(path: Path) -> list[str]:
    documents = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise PrepareError(f"{path}:{line_number}: invalid JSON ({error.msg})") from None
            text = record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise PrepareError(f"{path}:{line_number}: no string field 'text'")
            documents.append(text)
    if not documents:
        raise PrepareError(f"{path}: no documents")
    return documents


def load_documents(source: str) -> list[str]:
    if source == "stdlib":
        return list(stdlib_documents())
    path = Path(source).expanduser()
    if path.is_dir():
        return text_directory_documents(path)
    if path.is_file():
        return jsonl_documents(path)
    raise PrepareError(f"unknown source {source!r}: expected {SOURCE_CHOICES}")


# ---------------------------------------------------------------- prepare


def prepare(
    source: str,
    vocab: int,
    root: str | os.PathLike[str],
    *,
    repo_dir: str | os.PathLike[str] | None = None,
    repo_id: str | None = None,
    train_shards: int = 80,
    variant: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 1337,
    shard_tokens: int = SHARD_TOKENS,
    max_docs: int | None = None,
) -> PreparedData:
    """Prepare (or reuse) a tokenized dataset under the data root and return where it is.

    For `fineweb`, `variant` names a published tokenization (FINEWEB_VARIANTS; default sp<vocab>)
    and `repo_id` overrides the hub repo it comes from."""
    if vocab < 8 or vocab > 2**16:
        raise PrepareError(f"vocab must be between 8 and 65536, got {vocab}")
    if source not in ("stdlib", "fineweb") and not Path(source).expanduser().exists():
        raise PrepareError(f"unknown source {source!r}: expected {SOURCE_CHOICES}")
    if variant is not None and source != "fineweb":
        raise PrepareError(f"a variant ({variant}) is for --source fineweb, not {source!r}")
    published = fineweb_variant(variant, vocab) if source == "fineweb" else None
    if published is not None:
        vocab, dataset, tokenizer = published.vocab, published.dataset, published.tokenizer
        data_path = Path(root).expanduser() / "datasets" / dataset
        tokenizer_path = Path(root).expanduser() / "tokenizers" / published.tokenizer_file
    else:
        dataset, tokenizer = dataset_names(source, vocab)
        data_path, tokenizer_path = dataset_paths(dataset, tokenizer, root)
    data_path.mkdir(parents=True, exist_ok=True)
    with _locked(data_path / ".prepare.lock"):
        if published is not None:
            repo = repo_id or published.repo_id
            key = _key({"source": "fineweb", "repo": repo, "vocab": vocab, "train_shards": train_shards})
            cached = _cached(data_path, tokenizer_path, key)
            if cached is not None:
                return PreparedData(data_path, tokenizer_path, dataset, tokenizer, vocab, cached, True)
            manifest = fetch_fineweb(data_path, tokenizer_path, published, train_shards, repo, repo_dir)
        else:
            documents = load_documents(source)[:max_docs]
            settings = {"vocab": vocab, "val_fraction": val_fraction, "seed": seed, "shard_tokens": shard_tokens}
            key = _key(
                {"format": MANIFEST_FORMAT, "tokenizer": TOKENIZER_SETTINGS, **settings, "docs": _digest(documents)}
            )
            cached = _cached(data_path, tokenizer_path, key)
            if cached is not None:
                return PreparedData(data_path, tokenizer_path, dataset, tokenizer, vocab, cached, True)
            manifest = _tokenize_documents(
                documents, data_path, tokenizer_path, vocab, val_fraction, seed, shard_tokens
            )
        manifest.update(key=key, source=source, dataset=dataset, tokenizer=tokenizer, vocab_size=vocab)
        if published is not None:
            manifest["variant"] = published.name
        manifest["tokenizer_path"] = os.path.relpath(tokenizer_path, data_path)
        _write_json(data_path / "manifest.json", manifest)
    return PreparedData(data_path, tokenizer_path, dataset, tokenizer, vocab, manifest, False)


def _tokenize_documents(
    documents: list[str],
    data_path: Path,
    tokenizer_path: Path,
    vocab: int,
    val_fraction: float,
    seed: int,
    shard_tokens: int,
) -> dict:
    import sentencepiece as spm

    documents = [d for d in documents if d.strip()]
    if len(documents) < 2:
        raise PrepareError(f"need at least 2 non-empty documents, got {len(documents)}")
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    num_val = min(len(documents) - 1, max(1, round(val_fraction * len(documents))))
    val_docs = [documents[i] for i in order[:num_val]]
    train_docs = [documents[i] for i in order[num_val:]]

    remove_old_shards(data_path)
    tokenizer_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_prefix = tokenizer_path.with_name(f".{tokenizer_path.stem}.{os.getpid()}")
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=_training_lines(train_docs),
        model_prefix=str(tmp_prefix),
        vocab_size=vocab,
        num_threads=max(1, min(8, os.cpu_count() or 1)),
        minloglevel=2,
        # sentencepiece's stubs type the options as **kwargs beside arg/logstream/normalizer, which a dict could name
        **TOKENIZER_SETTINGS,  # type: ignore[arg-type]
    )
    processor = spm.SentencePieceProcessor(model_file=f"{tmp_prefix}.model")
    pieces = processor.vocab_size()
    if pieces != vocab:
        raise PrepareError(f"corpus too small for vocab {vocab}: the tokenizer learned only {pieces} pieces")
    os.replace(f"{tmp_prefix}.model", tokenizer_path)
    os.replace(f"{tmp_prefix}.vocab", tokenizer_path.with_suffix(".vocab"))

    files: dict[str, int] = {}
    stats: dict[str, int] = {"docs_train": len(train_docs), "docs_val": len(val_docs)}
    for split, docs in (("val", val_docs), ("train", train_docs)):
        tokens = np.fromiter(_document_tokens(processor, docs), dtype=np.uint16)
        starts = range(0, len(tokens), shard_tokens)
        for index, start in enumerate(starts):
            name = f"fineweb_{split}_{index:06d}.bin"
            files[name] = write_shard(data_path / name, tokens[start : start + shard_tokens])
        stats[f"tokens_{split}"] = int(len(tokens))
        stats[f"files_{split}"] = len(starts)
    return {"format": MANIFEST_FORMAT, "files": files, "stats": stats}


def _training_lines(documents: list[str]) -> Iterator[str]:
    # SentencePiece trains on sentences; long lines past its 4192-byte limit are dropped, so split on lines.
    for document in documents:
        for line in document.splitlines():
            if line.strip():
                yield line


def _document_tokens(processor, documents: list[str]) -> Iterator[int]:
    # Each document is BOS followed by its tokens; no EOS, as in the challenge's export.
    for start in range(0, len(documents), 256):
        for ids in processor.encode(documents[start : start + 256]):
            yield BOS_ID
            yield from ids


# ---------------------------------------------------------------- cache helpers


def _cached(data_path: Path, tokenizer_path: Path, key: str) -> dict | None:
    """The manifest if the dataset at data_path was built from key and is intact."""
    try:
        manifest = json.loads((data_path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("key") != key or not tokenizer_path.is_file():
        return None
    for name, size in manifest.get("files", {}).items():
        path = data_path / name
        if not path.is_file() or path.stat().st_size != size:
            return None
    return manifest


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _digest(documents: list[str]) -> str:
    hasher = hashlib.sha256()
    for document in documents:
        encoded = document.encode("utf-8")
        hasher.update(len(encoded).to_bytes(8, "little"))
        hasher.update(encoded)
    return hasher.hexdigest()


def _key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two workers preparing the same dataset at once: the second waits, then finds the cache.
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
