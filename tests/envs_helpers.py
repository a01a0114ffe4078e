"""Code folders and wheels for the environment tests: everything made here, nothing fetched.

`make_wheel` writes a real wheel (a zip with its dist-info and RECORD) of a made-up package,
so uv installs it from a find-links folder with --no-index: the tests need no network.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

# A package golfq does not depend on and no index will ever serve under this name.
PACKAGE = "golfq_envtest_pkg"


def make_wheel(folder: Path, name: str = PACKAGE, version: str = "1.0.0", body: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": (body or f"VERSION = {version!r}\n").encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: golfq-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(content)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return wheel


@pytest.fixture
def wheels(tmp_path, monkeypatch):
    """The made-up package's wheel in a find-links folder that workers' uv installs from, with no index."""
    folder = tmp_path / "wheels"
    make_wheel(folder)
    monkeypatch.setenv("GOLFQ_ENV_FIND_LINKS", str(folder))
    monkeypatch.setenv("GOLFQ_ENV_NO_INDEX", "1")
    monkeypatch.setenv("GOLFQ_ENV_DIR", str(tmp_path / "envs"))
    return folder


# Imports the made-up package, says where it came from, then prints the challenge's final lines.
USES_PACKAGE = f"""\
import os, sys
import {PACKAGE}
print("package", {PACKAGE}.VERSION, {PACKAGE}.__file__)
print("python", sys.executable)
import helper
bpb = helper.BPB + int(os.environ["SEED"]) / 1000
print(f"final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:{{bpb}}")
print("Total submission size int8+zlib: 4096 bytes")
"""


def code_folder(root: Path, requirements: str | None = f"{PACKAGE}==1.0.0\n", script: str = USES_PACKAGE,
                files: dict[str, str] | None = None) -> Path:
    """A record-like folder: train_gpt.py, a helper module, requirements.txt, and any extra files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train_gpt.py").write_text(script)
    (root / "helper.py").write_text("BPB = 1.25\n")
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
