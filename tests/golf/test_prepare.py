"""`golfq data prepare` for every source, the layout it writes, and its cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from golfq.workers.golf.fineweb import FINEWEB_REPO_ID, FINEWEB_VARIANTS, fineweb_variant
from golfq.workers.golf.prepare import PrepareError, dataset_paths, prepare, stdlib_documents
from golfq.workers.golf.shards import ShardError, read_shard, shard_files, write_shard
from tests.golfq_helpers import cli  # noqa: F401 (fixture)


def documents_in(data_path: Path, split: str) -> list[list[int]]:
    """Split a split's token stream back into documents at BOS (id 1)."""
    tokens = np.concatenate([read_shard(p) for p in shard_files(data_path, split)]).tolist()
    assert tokens[0] == 1, "every split starts with a document's BOS"
    documents, current = [], []
    for token in tokens[1:] + [1]:
        if token == 1:
            documents.append(current)
            current = []
        else:
            current.append(token)
    return documents


def test_stdlib_layout_names_and_documents(stdlib_data):
    root = stdlib_data.data_path.parents[1]
    assert stdlib_data.dataset == "stdlib_sp1024" and stdlib_data.tokenizer == "stdlib_1024_bpe"
    paths = dataset_paths("stdlib_sp1024", "stdlib_1024_bpe", root)
    assert (stdlib_data.data_path, stdlib_data.tokenizer_path) == paths
    assert stdlib_data.data_path == root / "datasets" / "stdlib_sp1024"
    assert stdlib_data.tokenizer_path == root / "tokenizers" / "stdlib_1024_bpe.model"
    manifest = json.loads((stdlib_data.data_path / "manifest.json").read_text())
    assert manifest["vocab_size"] == 1024 and manifest["key"] and manifest["stats"]["tokens_train"] > 100_000
    processor = spm.SentencePieceProcessor(model_file=str(stdlib_data.tokenizer_path))
    assert processor.vocab_size() == 1024
    assert (processor.pad_id(), processor.bos_id(), processor.eos_id(), processor.unk_id()) == (0, 1, 2, 3)
    assert sum(processor.is_byte(i) for i in range(1024)) == 256  # byte fallback
    # every document is BOS + its tokens, no EOS; train and val are disjoint documents
    val, train = documents_in(stdlib_data.data_path, "val"), documents_in(stdlib_data.data_path, "train")
    assert len(val) == manifest["stats"]["docs_val"] and len(train) == manifest["stats"]["docs_train"]
    assert not any(2 in doc for doc in val[:20])
    texts, val_texts = {processor.decode(doc) for doc in train}, {processor.decode(doc) for doc in val}
    assert not texts & val_texts
    assert any("for" in t and "statement" in t for t in texts | val_texts)  # pydoc topics are in


def test_stdlib_documents_are_deterministic():
    first, second = stdlib_documents.__wrapped__(), stdlib_documents.__wrapped__()  # past the in-process cache
    assert first == second and len(first) > 200 and sum(map(len, first)) > 1_000_000


def test_cache_is_reused_and_rebuilt_when_damaged(stdlib_data):
    root = stdlib_data.data_path.parents[1]
    shard = stdlib_data.data_path / "fineweb_val_000000.bin"
    before = shard.stat().st_mtime_ns
    again = prepare("stdlib", 1024, root)
    assert again.reused and shard.stat().st_mtime_ns == before and again.manifest["key"] == stdlib_data.manifest["key"]
    original = shard.read_bytes()
    shard.write_bytes(original[:-2])  # a damaged cache is rebuilt, identically (deterministic split + tokenizer)
    rebuilt = prepare("stdlib", 1024, root)
    assert not rebuilt.reused and shard.read_bytes() == original


def write_texts(directory: Path, count: int = 40) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    documents = stdlib_documents()[:count]
    for i, text in enumerate(documents):
        (directory / f"doc{i:03d}.txt").write_text(text, encoding="utf-8")


def test_text_directory_source(tmp_path):
    corpus = tmp_path / "My Corpus"
    write_texts(corpus)
    prepared = prepare(str(corpus), 512, tmp_path / "out", val_fraction=0.25, shard_tokens=20_000)
    assert prepared.dataset == "my_corpus_sp512" and prepared.tokenizer == "my_corpus_512_bpe"
    stats = prepared.manifest["stats"]
    assert stats["docs_val"] == 10 and stats["docs_train"] == 30
    assert stats["files_train"] == len(shard_files(prepared.data_path, "train")) > 1  # split into 20k-token shards
    assert all(read_shard(p).size <= 20_000 for p in shard_files(prepared.data_path, "train"))
    assert sum(len(d) + 1 for d in documents_in(prepared.data_path, "train")) == stats["tokens_train"]
    assert prepare(str(corpus), 512, tmp_path / "out", val_fraction=0.25, shard_tokens=20_000).reused
    (corpus / "doc000.txt").write_text("changed text " * 50)
    assert not prepare(str(corpus), 512, tmp_path / "out", val_fraction=0.25, shard_tokens=20_000).reused


def test_jsonl_source_and_its_errors(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(stdlib_documents()[:40])) + "\n")
    prepared = prepare(str(path), 512, tmp_path / "out")
    processor = spm.SentencePieceProcessor(model_file=str(prepared.tokenizer_path))
    assert prepared.dataset == "docs_sp512" and processor.vocab_size() == 512
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(PrepareError, match=r"bad.jsonl:2: no string field 'text'"):
        prepare(str(bad), 512, tmp_path / "out")


def test_too_small_corpus_and_unknown_source(tmp_path):
    write_texts(tmp_path / "tiny", count=3)
    with pytest.raises(PrepareError, match="corpus too small for vocab 4096"):
        prepare(str(tmp_path / "tiny"), 4096, tmp_path / "out")
    with pytest.raises(PrepareError, match="unknown source 'nope'"):
        prepare("nope", 1024, tmp_path / "out")
    assert not (tmp_path / "out" / "datasets" / "nope_sp1024").exists()


def fake_hub_repo(tmp_path: Path, stdlib_data, train_shards: int = 3, variant: str = "sp1024",
                  tokenizer: str = "fineweb_1024_bpe", sidecar: bool = False) -> Path:
    """A local directory laid out like a hub dataset of the challenge (willdepueoai/parameter-golf and the
    repos the records point cached_challenge_fineweb.py at)."""
    repo = tmp_path / f"hub_{variant}"
    shards = repo / "datasets" / "datasets" / f"fineweb10B_{variant}"
    tokens = read_shard(shard_files(stdlib_data.data_path, "train")[0])
    for i in range(train_shards):
        write_shard(shards / f"fineweb_train_{i:06d}.bin", tokens[i * 1000 : (i + 1) * 1000])
    shutil.copy(shard_files(stdlib_data.data_path, "val")[0], shards / "fineweb_val_000000.bin")
    if sidecar:  # CaseOps: bytes per validation token, beside the tokens
        (shards / "fineweb_val_bytes_000000.bin").write_bytes(b"\x02\x00" * 64)
    (repo / "datasets" / "tokenizers").mkdir(parents=True)
    for suffix in (".model", ".vocab"):
        hub_file = repo / "datasets" / "tokenizers" / (tokenizer + suffix)
        shutil.copy(stdlib_data.tokenizer_path.with_suffix(suffix), hub_file)
    entry = {"name": f"fineweb10B_{variant}", "tokenizer_name": f"tok_{variant}",
             "stats": {"files_train": train_shards, "files_val": 1}}
    if sidecar:
        entry["val_bytes_glob"] = "fineweb_val_bytes_*.bin"
    manifest = {
        "datasets": [entry],
        "tokenizers": [{"name": f"tok_{variant}", "model_path": f"tokenizers/{tokenizer}.model",
                        "vocab_path": f"tokenizers/{tokenizer}.vocab"}],
    }
    (repo / "datasets" / "manifest.json").write_text(json.dumps(manifest))
    return repo


def test_fineweb_from_a_local_copy_of_the_hub(tmp_path, stdlib_data):
    repo = fake_hub_repo(tmp_path, stdlib_data)
    out = tmp_path / "out"
    prepared = prepare("fineweb", 1024, out, repo_dir=repo, train_shards=2)
    assert (prepared.dataset, prepared.tokenizer) == ("fineweb10B_sp1024", "fineweb_1024_bpe")
    assert prepared.data_path == out / "datasets" / "fineweb10B_sp1024"
    assert prepared.tokenizer_path == out / "tokenizers" / "fineweb_1024_bpe.model"
    train_names = [Path(p).name for p in shard_files(prepared.data_path, "train")]
    assert train_names == ["fineweb_train_000000.bin", "fineweb_train_000001.bin"]
    hub_shards = repo / "datasets" / "datasets" / "fineweb10B_sp1024"
    shard = "fineweb_train_000001.bin"
    assert (prepared.data_path / shard).read_bytes() == (hub_shards / shard).read_bytes()
    assert prepared.tokenizer_path.read_bytes() == stdlib_data.tokenizer_path.read_bytes()
    assert prepare("fineweb", 1024, out, repo_dir=repo, train_shards=2).reused
    assert len(shard_files(prepare("fineweb", 1024, out, repo_dir=repo, train_shards=80).data_path, "train")) == 3


def test_fineweb_errors_name_the_problem(tmp_path, stdlib_data):
    repo = fake_hub_repo(tmp_path, stdlib_data)
    with pytest.raises(PrepareError, match="fineweb10B_sp4096 is not in"):
        prepare("fineweb", 4096, tmp_path / "out", repo_dir=repo)
    broken = repo / "datasets" / "datasets" / "fineweb10B_sp1024" / "fineweb_train_000001.bin"
    broken.write_bytes(broken.read_bytes()[:-1])
    with pytest.raises(ShardError, match="fineweb_train_000001.bin: truncated file"):
        prepare("fineweb", 1024, tmp_path / "out", repo_dir=repo)
    broken.unlink()
    with pytest.raises(PrepareError, match="fineweb_train_000001.bin: missing from the local copy"):
        prepare("fineweb", 1024, tmp_path / "out", repo_dir=repo)


def test_the_data_root_is_the_callers_choice_and_the_layout_is_the_queues(monkeypatch, tmp_path):
    # prepare() and dataset_paths() take the root as an argument; only golfq.core.settings reads GOLFQ_DATA_DIR
    monkeypatch.setenv("GOLFQ_DATA_DIR", str(tmp_path / "elsewhere"))
    root = tmp_path / "root"
    assert dataset_paths("d", "t", root) == (root / "datasets" / "d", root / "tokenizers" / "t.model")
    assert dataset_paths("d", "t", "~/x")[0] == Path.home() / "x" / "datasets" / "d"
    from golfq.core.settings import settings
    from golfq.core.spec import DataRef

    # the trainer and the queue write the challenge's layout each (the trainer imports nothing of golfq): the same
    queue_paths = DataRef(dataset="d", tokenizer="t").paths(settings().data_dir)
    assert queue_paths == dataset_paths("d", "t", tmp_path / "elsewhere")


def test_the_published_variants_and_their_layout():
    assert set(FINEWEB_VARIANTS) == {"sp1024", "byte260", "sp4096", "sp8192",
                                     "sp8192_lossless_caps_caseops_v1_reserved"}
    for name, variant in FINEWEB_VARIANTS.items():
        assert variant.dataset == f"fineweb10B_{name}"  # cached_challenge_fineweb.py's dataset_dir_for_variant
    sp8192 = fineweb_variant("sp8192", 1024)
    assert (sp8192.repo_id, sp8192.tokenizer, sp8192.vocab) == ("kevclark/parameter-golf", "fineweb_8192_bpe", 8192)
    assert fineweb_variant(None, 4096).name == "sp4096" and fineweb_variant(None, 1024).repo_id == FINEWEB_REPO_ID
    caseops = FINEWEB_VARIANTS["sp8192_lossless_caps_caseops_v1_reserved"]
    # the names the top records' launch lines give DATA_PATH and TOKENIZER_PATH
    assert caseops.dataset == "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"
    assert caseops.tokenizer_file == "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"


def test_a_caseops_variant_from_a_local_copy_brings_its_byte_sidecar(tmp_path, stdlib_data):
    name, tokenizer = "sp8192_lossless_caps_caseops_v1_reserved", "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved"
    repo = fake_hub_repo(tmp_path, stdlib_data, train_shards=2, variant=name, tokenizer=tokenizer, sidecar=True)
    out = tmp_path / "out"
    prepared = prepare("fineweb", 1024, out, repo_dir=repo, variant=name)
    assert prepared.data_path == out / "datasets" / f"fineweb10B_{name}"
    assert prepared.tokenizer_path == out / "tokenizers" / f"{tokenizer}.model"
    assert (prepared.tokenizer, prepared.vocab_size) == (tokenizer, 8192)
    assert (prepared.data_path / "fineweb_val_bytes_000000.bin").read_bytes() == b"\x02\x00" * 64
    assert (out / "tokenizers" / f"{tokenizer}.vocab").is_file()
    assert prepared.manifest["variant"] == name and prepared.manifest["stats"]["files_val_bytes"] == 1
    assert len(shard_files(prepared.data_path, "train")) == 2
    assert prepare("fineweb", 1024, out, repo_dir=repo, variant=name).reused


def test_an_unknown_variant_is_one_line(tmp_path, cli):
    with pytest.raises(PrepareError, match="unknown fineweb variant 'sp999'"):
        prepare("fineweb", 1024, tmp_path / "out", variant="sp999")
    with pytest.raises(PrepareError, match="for --source fineweb"):
        prepare("stdlib", 1024, tmp_path / "out", variant="sp8192")
    code, _, err = cli("data", "prepare", "--source", "fineweb", "--variant", "sp999", "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and "published: sp1024, byte260, sp4096, sp8192" in err
    assert not (tmp_path / "o").exists()
