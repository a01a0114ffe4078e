"""The challenge's published FineWeb exports: which tokenizer variants exist, where, and fetching one.

`data/cached_challenge_fineweb.py` in openai/parameter-golf fetches a variant by name
(`--variant sp1024`, `byte260`, `sp<N>`) from a hub dataset repo's `datasets/` folder,
driven by that repo's manifest.json; the records point it at other repos for other
variants (MATCHED_FINEWEB_REPO_ID). This module does the same into golfq's data root.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golfq.workers.golf.shards import read_token_count

MANIFEST_FORMAT = 1
FINEWEB_REPO_ID = "willdepueoai/parameter-golf"
FINEWEB_REMOTE_ROOT = "datasets"


class PrepareError(ValueError):
    """Data preparation cannot go on; the message is one line for the user."""


@dataclass(frozen=True)
class Variant:
    """A published tokenization of the challenge's FineWeb export, as cached_challenge_fineweb.py fetches it."""

    name: str  # its --variant
    repo_id: str  # the hub dataset repo (MATCHED_FINEWEB_REPO_ID in the records' commands)
    tokenizer_file: str  # under tokenizers/; the hub manifest may list more files (the .vocab)
    vocab: int

    @property
    def dataset(self) -> str:
        return f"fineweb10B_{self.name}"

    @property
    def tokenizer(self) -> str:
        return self.tokenizer_file.rsplit(".", 1)[0]


# The variants the challenge's download script names (byte260, sp<N>) and the records fetch: sp1024 and byte260
# from the default repo; sp4096 and sp8192 from kevclark/parameter-golf (04-01 and 04-05 records); CaseOps SP8192,
# with its validation byte sidecar, from romeerp/parameter-golf-caseops-v1 (04-18 record onwards).
FINEWEB_VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("sp1024", FINEWEB_REPO_ID, "fineweb_1024_bpe.model", 1024),
    Variant("byte260", FINEWEB_REPO_ID, "fineweb_pure_byte_260.json", 260),
    Variant("sp4096", "kevclark/parameter-golf", "fineweb_4096_bpe.model", 4096),
    Variant("sp8192", "kevclark/parameter-golf", "fineweb_8192_bpe.model", 8192),
    Variant("sp8192_lossless_caps_caseops_v1_reserved", "romeerp/parameter-golf-caseops-v1",
            "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model", 8192),
)}


def fineweb_variant(name: str | None, vocab: int) -> Variant:
    """The named variant, else sp<vocab>; PrepareError (one line) for a variant nobody published."""
    wanted = name or f"sp{vocab}"
    if wanted not in FINEWEB_VARIANTS:
        raise PrepareError(f"unknown fineweb variant {wanted!r} (published: {', '.join(FINEWEB_VARIANTS)})")
    return FINEWEB_VARIANTS[wanted]


def fetch_fineweb(
    data_path: Path,
    tokenizer_path: Path,
    variant: Variant,
    train_shards: int,
    repo_id: str,
    repo_dir: str | os.PathLike[str] | None,
) -> dict:
    """Copy the challenge's pre-tokenized shards and tokenizer from the hub (or a local copy of it).

    The repo's manifest.json says how many shards there are, which tokenizer files belong to
    the dataset and whether it has a validation byte sidecar (`val_bytes_glob`, CaseOps)."""

    def fetch(relative: str) -> Path:
        remote = f"{FINEWEB_REMOTE_ROOT}/{relative}"
        if repo_dir is not None:
            path = Path(repo_dir).expanduser() / remote
            if not path.is_file():
                raise PrepareError(f"{path}: missing from the local copy of {repo_id}")
            return path
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            raise PrepareError("source fineweb needs huggingface_hub: pip install 'golfq[fineweb]'") from None
        return Path(hf_hub_download(repo_id=repo_id, filename=remote, repo_type="dataset")).resolve()

    dataset = variant.dataset
    hub_manifest = json.loads(fetch("manifest.json").read_text(encoding="utf-8"))
    entry = next((d for d in hub_manifest.get("datasets", []) if d.get("name") == dataset), None)
    if entry is None:
        raise PrepareError(f"dataset {dataset} is not in {repo_id}'s manifest.json")
    stats = entry.get("stats") or {}
    files_train, files_val = min(train_shards, int(stats.get("files_train", 0))), int(stats.get("files_val", 0))
    if files_val < 1 or files_train < 1:
        raise PrepareError(f"{repo_id}'s manifest lists {files_val} val and {files_train} train shards for {dataset}")
    tokenizer_name = entry.get("tokenizer_name")
    tokenizer_entry: dict[str, Any] = next(
        (t for t in hub_manifest.get("tokenizers", []) if t.get("name") == tokenizer_name), {}
    )
    artifacts = [str(tokenizer_entry[k]) for k in ("model_path", "vocab_path", "path") if tokenizer_entry.get(k)]
    if not any(Path(a).name == tokenizer_path.name for a in artifacts):
        artifacts.insert(0, f"tokenizers/{tokenizer_path.name}")

    remove_old_shards(data_path)
    files: dict[str, int] = {}
    shards = [f"fineweb_val_{i:06d}.bin" for i in range(files_val)]
    shards += [f"fineweb_train_{i:06d}.bin" for i in range(files_train)]
    sidecars = [f"fineweb_val_bytes_{i:06d}.bin" for i in range(files_val)] if entry.get("val_bytes_glob") else []
    for name in shards + sidecars:
        source = fetch(f"datasets/{dataset}/{name}")
        if name in shards:
            read_token_count(source)
        link_or_copy(source, data_path / name)
        files[name] = (data_path / name).stat().st_size
    tokenizer_path.parent.mkdir(parents=True, exist_ok=True)
    for artifact in artifacts:
        link_or_copy(fetch(artifact), tokenizer_path.parent / Path(artifact).name)
    stats = {"files_train": files_train, "files_val": files_val, "files_val_bytes": len(sidecars)}
    return {"format": MANIFEST_FORMAT, "files": files, "stats": stats, "repo_id": repo_id}


def remove_old_shards(data_path: Path) -> None:
    (data_path / "manifest.json").unlink(missing_ok=True)
    for path in data_path.glob("fineweb_*.bin"):
        path.unlink()


def link_or_copy(source: Path, destination: Path) -> None:
    tmp = destination.with_name(destination.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, destination)
