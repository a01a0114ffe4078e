"""`golfq skill install|show`: the agent skill (SKILL.md) where coding agents look for skills."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from golfq.producer.skill import DEFAULT_DIR, install_skill, skill_text

skill_app = typer.Typer(name="skill", help="The golfq skill for coding agents (SKILL.md).", no_args_is_help=True,
                        add_completion=False)


@skill_app.command("install")
def install(
    directory: Annotated[
        Path,
        typer.Option("--dir", metavar="DIR", help="Skill folder (.claude/skills/golfq for Claude Code)."),
    ] = DEFAULT_DIR,
    force: Annotated[bool, typer.Option("--force", help="Replace an edited copy.")] = False,
) -> None:
    """Write SKILL.md for coding agents (default .agents/skills/golfq/)."""
    print(f"wrote {install_skill(directory, force)}")


@skill_app.command("show")
def show() -> None:
    """Print the skill."""
    sys.stdout.write(skill_text())
