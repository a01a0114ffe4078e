"""The one-file trainer: deterministic, self-contained, and refusing what it cannot join."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from golfq.workers.golf.bundle import (
    GOLF_DIR,
    MODULES,
    BundleError,
    bundle_bytes,
    bundle_source,
    write_bundle,
)


def test_the_bundle_is_deterministic_and_its_size_is_what_golfq_counts(tmp_path):
    first = bundle_source()
    assert bundle_source() == first
    assert write_bundle(tmp_path / "train_gpt.py") == bundle_bytes() == len(first.encode("utf-8"))
    assert (tmp_path / "train_gpt.py").read_text(encoding="utf-8") == first
    # a copy of the same sources elsewhere gives the same bytes: nothing depends on where they live
    assert bundle_source(copy_modules(tmp_path)) == first


def test_the_bundle_stands_alone():
    tree = ast.parse(bundle_source())
    imported = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)}
    # only what the challenge's requirements.txt and the stdlib provide
    assert imported <= {"__future__", "collections", "contextlib", "copy", "dataclasses", "glob", "json", "lzma",
                        "math", "numpy", "os", "pathlib", "random", "resource", "shutil", "signal", "sys", "time",
                        "torch", "zlib"}
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert len(defined) == len(set(defined)) and {"main", "GPT", "Muon", "pack_artifact", "evaluate"} <= set(defined)
    assert isinstance(tree.body[-1], ast.If)  # `if __name__ == "__main__":` runs it, last
    # the trainer reads no golfq environment variables
    assert not re.search(r"environ[^\n]*GOLFQ_", bundle_source())


def copy_modules(tmp_path: Path) -> Path:
    golf = tmp_path / "golf"
    golf.mkdir()
    for module in MODULES:
        shutil.copy(GOLF_DIR / f"{module}.py", golf / f"{module}.py")
    return golf


@pytest.mark.parametrize(
    ("module", "addition", "message"),
    [
        ("loader", "\n\ndef read_shard(path):\n    return path\n", "loader.py and shards.py both define 'read_shard'"),
        ("bpb", "\nfrom golfq.workers.golf.shards import shard_files as files\n", "cannot be bundled"),
        ("shards", "\nfrom golfq.workers.golf.train import main\n", "cannot be bundled"),
        ("model", "\nimport numpy as torch\n", "binds 'torch' to numpy"),
        ("optim", "\nimport json\n\n\ndef json_dump():\n    pass\njson = 1\n", "both imported and defined"),
    ],
)
def test_what_cannot_be_joined_is_refused(tmp_path, module, addition, message):
    golf = copy_modules(tmp_path)
    with open(golf / f"{module}.py", "a", encoding="utf-8") as handle:
        handle.write(addition)
    with pytest.raises(BundleError, match=re.escape(message)):
        bundle_source(golf)
