"""The repository stands alone: nothing points at notes outside it, and the docs name files that exist."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.golfq_helpers import REPO_ROOT

# Built from parts so this file does not match itself.
OUTSIDE = [".." + "/shared", "shared" + "/reference", "shared" + "/DESIGN.md"]
OWN_FACTS = ["docs/design.md", "docs/challenge.md", "docs/modal-semantics.md", "docs/rq-redis.md"]


def _repository_files() -> list[str]:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO_ROOT / name).is_file()]


def test_no_file_points_outside_the_repository():
    offenders = []
    for name in _repository_files():
        try:
            text = (REPO_ROOT / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
                      if any(needle in line for needle in OUTSIDE)]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("doc", OWN_FACTS)
def test_the_facts_pages_cite_public_sources_and_name_real_files(doc):
    text = (REPO_ROOT / doc).read_text(encoding="utf-8")
    assert doc == "docs/design.md" or re.search(r"<https://(github\.com|modal\.com|python-rq\.org)/", text)
    named = set(re.findall(r"`((?:core|workers|ops|producer|cli|tests|bench|docs)/[\w./-]+\.(?:py|md))`", text))
    missing = sorted(path for path in named if not (REPO_ROOT / path).exists())
    assert named and not missing, missing


def test_the_record_logs_tests_read_are_in_the_repository():
    logs = sorted(p.name for p in (REPO_ROOT / "tests" / "fixtures" / "logs").glob("*.log"))
    assert len(logs) == 4
    assert sorted(p.name for p in (REPO_ROOT / "tests" / "fixtures" / "progress").glob("*.log")) == logs
