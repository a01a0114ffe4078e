"""A record's `requirements.txt` from what its `train_gpt.py` imports, for `golfq submission`.

Records ship a requirements.txt naming the PyPI packages their script imports, torch pinned
to the build they ran (`torch==2.9.1+cu128`), and, in comments, what pip cannot install
from an index: FlashAttention 3 from a wheel index. golfq writes the same from the script
it submits: its top-level imports, less the standard library, under their PyPI names
(golfq itself is left out: the built-in trainer's bundle imports it only when run from golfq).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Collection, Sequence

from golfq.core.environment import parse_environment
from golfq.core.errors import GolfqError

# import name -> PyPI name, where they differ or the module comes with another package (None)
PYPI_NAMES: dict[str, str | None] = {
    "triton": None,  # ships with torch's CUDA wheels
    "python_minifier": "python-minifier",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "zstd": "zstd",
    "cv2": "opencv-python",
}
# imports no index serves, with the line that installs them
OUTSIDE_PIP = {
    "flash_attn_interface": ("FlashAttention 3 is not on PyPI: pip install --no-deps flash_attn_3 "
                             "--find-links <the wheel index for your CUDA and torch build>"),
}


def script_imports(code: bytes) -> list[str]:
    """The top-level modules a script imports, in order of first import; [] when it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [node.module]
        else:
            continue
        for name in found:
            top = name.split(".", 1)[0]
            if top not in names:
                names.append(top)
    return names


def requirements_text(sources: Sequence[bytes], torch_version: str | None, local: Collection[str] = ()) -> str:
    """requirements.txt for code (a script, or a folder's .py files): torch (pinned to the logged version), then the
    other third-party modules they import, less the `local` ones (the folder's own modules)."""
    skipped = {*sys.stdlib_module_names, "__future__", "golfq", *local}
    imported = list(dict.fromkeys(name for code in sources for name in script_imports(code)
                                  if name not in skipped and not name.startswith("_")))
    lines = ["# Written by golfq submission from the code's imports; torch as the runs logged it."]
    if "torch" in imported or not imported:
        lines.append(f"torch=={torch_version}" if torch_version else "torch")
    comments = []
    for name in imported:
        if name == "torch":
            continue
        if name in OUTSIDE_PIP:
            comments.append(f"# {name}: {OUTSIDE_PIP[name]}")
        elif (package := PYPI_NAMES.get(name, name)) is not None:
            lines.append(package)
    return "\n".join(lines + comments) + "\n"


def pins_torch(text: str) -> bool:
    """Whether a requirements.txt pins torch to one version (`torch==2.9.1+cu128`)."""
    try:
        requirements = parse_environment(text, None).parsed()
    except GolfqError:
        return False
    return any(r.name.lower() == "torch" and any(s.operator in ("==", "===") for s in r.specifier)
               for r in requirements)
