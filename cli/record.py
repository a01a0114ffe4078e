"""`golfq record import DIR`: a record folder of openai/parameter-golf as a spec file to edit and submit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from golfq.cli.console import JsonOption, emit_json
from golfq.core.environment import DECLARATION
from golfq.ops.recordfile import environment_declaration, render_toml
from golfq.ops.records import ImportedRecord, RecordError, import_record

record_app = typer.Typer(name="record", help="Record folders of openai/parameter-golf: import one as a spec file.",
                         no_args_is_help=True, add_completion=False)


@record_app.callback()
def _record() -> None:
    """Record folders of openai/parameter-golf: import one as a spec file."""  # a callback keeps `record` a group


def _summary(record: ImportedRecord, file: str, environment: str | None) -> dict[str, Any]:
    """`record import --json`: where the spec went (`-`: stdout), the folder's declaration written, what was read."""
    return {"file": file, "environment": environment, "spec": record.spec, "requirements": record.requirements,
            "outside_pip": record.outside_pip, "system_packages": record.system_packages, "notes": record.notes}


@record_app.command("import")
def import_command(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A record folder (README.md, train_gpt.py, ...).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", show_default=False,
                     help="The spec file to write (default: ./DIR_NAME.toml; '-' prints it)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a spec file (TOML) from a record folder: its launch line's environment, its requirements, its data.

    Example: golfq record import records/track_10min_16mb/2026-04-27_X --out x.toml; golfq submit x.toml
    """
    to_stdout = out is not None and str(out) == "-"
    target = Path.cwd() / f"{folder.resolve().name}.toml" if out is None else out
    record = import_record(folder, Path.cwd() / "spec.toml" if to_stdout else target)
    text = render_toml(record)
    if to_stdout:
        if as_json:
            emit_json({**_summary(record, "-", None), "toml": text})
        else:
            sys.stdout.write(text)
        return
    if target.exists() and not force:
        raise RecordError(f"record import: {target} exists (give --force to overwrite it, or --out FILE)")
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise RecordError(f"record import: cannot write {target}: {error.strerror or error}") from None
    declaration, declared = environment_declaration(record), record.folder / DECLARATION
    wrote_declaration = declaration is not None and not declared.exists()
    if wrote_declaration:
        try:
            declared.write_text(declaration or "", encoding="utf-8")
        except OSError as error:
            raise RecordError(f"record import: cannot write {declared}: {error.strerror or error}") from None
    if as_json:
        emit_json(_summary(record, str(target), str(declared) if wrote_declaration else None))
        return
    env = record.spec.get("env", {})
    check = f", {len(record.notes)} note(s) to check" if record.notes else ""
    print(f"wrote {target}: pool {record.spec['pool']}, {len(env)} env variable(s), "
          f"{len(record.requirements)} requirement(s){check}")
    if wrote_declaration:
        print(f"wrote {declared}: the Debian packages and installs its requirements.txt cannot carry")
    print(f"edit it, then: golfq submit {target}")
