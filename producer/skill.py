"""`golfq skill install`: write the agent skill (SKILL.md) where coding agents look for skills."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer

skill_app = typer.Typer(help="The golfq skill for coding agents (SKILL.md).", no_args_is_help=True)

DEFAULT_DIR = Path(".agents/skills/golfq")


def skill_text() -> str:
    return resources.files("golfq.producer").joinpath("SKILL.md").read_text(encoding="utf-8")


def install_skill(directory: Path = DEFAULT_DIR, force: bool = False) -> Path:
    """Write SKILL.md into directory; refuse to overwrite an edited copy unless forced."""
    target = Path(directory) / "SKILL.md"
    text = skill_text()
    if target.exists() and target.read_text(encoding="utf-8") != text and not force:
        raise FileExistsError(f"{target} exists and differs from this golfq's skill (use --force to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


@skill_app.command("install")
def install(
    directory: Path = typer.Option(DEFAULT_DIR, "--dir", help="skill folder (.claude/skills/golfq for Claude Code)"),
    force: bool = typer.Option(False, "--force", help="replace an edited copy"),
) -> None:
    """Write SKILL.md for coding agents (default .agents/skills/golfq/)."""
    try:
        target = install_skill(directory, force)
    except (FileExistsError, OSError) as error:
        typer.echo(f"golfq skill install: error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {target}")


@skill_app.command("show")
def show() -> None:
    """Print the skill."""
    typer.echo(skill_text(), nl=False)
