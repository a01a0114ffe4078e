"""The golfq skill for coding agents: SKILL.md, shipped with the package (`golfq skill install` writes it)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from golfq.core.errors import GolfqError

DEFAULT_DIR = Path(".agents/skills/golfq")


class SkillExistsError(GolfqError, FileExistsError):
    """An edited SKILL.md is in the way; replacing it needs force."""


def skill_text() -> str:
    return resources.files("golfq.producer").joinpath("SKILL.md").read_text(encoding="utf-8")


def install_skill(directory: Path = DEFAULT_DIR, force: bool = False) -> Path:
    """Write SKILL.md into directory; refuse to overwrite an edited copy unless forced."""
    target = Path(directory) / "SKILL.md"
    text = skill_text()
    if target.exists() and target.read_text(encoding="utf-8") != text and not force:
        raise SkillExistsError(f"{target} exists and differs from this golfq's skill (use --force to replace it)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise GolfqError(f"skill install: {target}: {error.strerror or error}") from None
    return target
