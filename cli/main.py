"""The `golfq` command: every verb, and its one error convention.

Errors print one line on stderr, `golfq: <message>`: a GolfqError exits with its code
(2 bad input or usage, 1 a job failed or a wait timed out), an internal bug with 3
(GOLFQ_DEBUG=1 shows the traceback). The verbs that need extras (`data`, `demo`,
`modal`, `skill`) are imported only when invoked, and left out, with a note, when
their module cannot be imported, so a missing extra never breaks the other verbs.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from golfq import __version__
from golfq.cli import jobs, loop, ops, pareto, record, submission, submit, worker
from golfq.core.errors import EXIT_BAD_INPUT, GolfqError, SettingsError
from golfq.core.settings import settings

try:  # typer >= 0.20 vendors its own click; older releases use the click package
    from typer import _click as click
except ImportError:  # pragma: no cover - depends on the installed typer
    import click  # type: ignore[no-redef]
Abort = getattr(click.exceptions, "Abort", KeyboardInterrupt)  # typer's vendored click has no Abort

EXIT_INTERNAL, EXIT_INTERRUPTED = 3, 130
HELP_OPTIONS = ["-h", "--help"]
# name -> (module, attribute): a Typer app, or a Typer whose one command is the verb.
OPTIONAL = {
    "data": ("golfq.cli.data", "data_app"),
    "demo": ("golfq.cli.demo", "app"),
    "mcp": ("golfq.cli.mcp", "app"),
    "modal": ("golfq.cli.modal", "modal_cli"),
    "skill": ("golfq.cli.skill", "skill_app"),
    "ui": ("golfq.cli.ui.command", "app"),
}


class _PlainOption(TyperOption):
    """A flag shows no value; an option shows its metavar, or its type in capitals (INT, not <list[int]>)."""

    def display_type_rich(self, ctx: click.Context) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        return re.findall(r"\w+", self.display_type(ctx))[-1].upper()


class _PlainArgument(TyperArgument):
    """An argument shows its metavar alone, bracketed in usage only when it is optional: [FILE|-], GRID.toml."""

    def display_type_rich(self, ctx: click.Context) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"


def _reflow(command: click.Command) -> None:
    """Docstrings wrap at the code's line length, and typer's rich help keeps those breaks (ragged
    paragraphs): each paragraph becomes one line, for the terminal to wrap. An `Example: ...` becomes a
    paragraph of its own at the end, so a group's command list (each command's first paragraph) has none."""
    paragraphs, examples = [], []
    for paragraph in inspect.cleandoc(command.help or "").split("\n\n"):
        text, marker, example = " ".join(paragraph.split()).partition("Example: ")
        paragraphs += [text.strip()] if text.strip() else []
        examples += [marker + example] if marker else []
    if paragraphs or examples:
        command.help = "\n\n".join(paragraphs + examples)
        command.short_help = paragraphs[0] if paragraphs else None


def _plain_help(command: click.Command) -> click.Command:
    """Typer 0.29 prints a Python type beside every parameter (`--json <bool>`) and braces required
    arguments in usage (`{GRID.toml}`); golfq's help shows parameters the plain way, the help option too.
    `-h` is `--help` everywhere, as in gh, kubectl, rq and pip."""
    command.context_settings["help_option_names"] = HELP_OPTIONS
    _reflow(command)
    commands = getattr(command, "commands", {})
    for sub in commands.values():
        _plain_help(sub)
    help_option = command.get_help_option(click.Context(command, help_option_names=HELP_OPTIONS))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if type(param) is TyperOption:
            param.__class__ = _PlainOption
        elif type(param) is TyperArgument:
            param.__class__ = _PlainArgument
    return command


def _debug() -> bool:
    try:
        return settings().debug
    except SettingsError:
        return False


def _load_optional(name: str) -> click.Command | None:
    module_name, attribute = OPTIONAL[name]
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except Exception as error:  # a missing extra or a broken module must not break every other verb
        if _debug():
            raise
        sys.stderr.write(f"golfq: `{name}` is unavailable here ({type(error).__name__}: {error})\n")
        return None
    command = typer.main.get_command(target)
    command.name = name
    return _plain_help(command)


class _Root(TyperGroup):
    """Lists the optional verbs; imports one only when it is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in OPTIONAL if n not in self.commands)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in OPTIONAL:
            command = _load_optional(name)
        return command


app = typer.Typer(
    name="golfq", cls=_Root, no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
    help="golfq: an elastic experiment queue. Enqueue specs, run workers, read the Pareto front.",
)
for verbs in (submit.app, jobs.app, pareto.app, loop.app, submission.app, worker.app):
    app.registered_commands.extend(verbs.registered_commands)
app.add_typer(ops.ops_app, name="ops")
app.add_typer(record.record_app, name="record")


def _print_version(value: bool) -> None:
    if value:
        print(f"golfq {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print golfq's version and exit.")] = False,
) -> None:
    pass


SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


@app.command()
def completion(shell: Annotated[str, typer.Argument(metavar="|".join(SHELLS[:-1]))]) -> None:
    """Print the tab-completion script for a shell: bash, zsh, fish or powershell.

    `golfq --install-completion` installs it for the shell golfq runs in; this prints it for any.

    Example: golfq completion bash >> ~/.bashrc
    """
    if shell not in SHELLS:
        raise GolfqError(f"completion: unknown shell {shell!r} (one of {', '.join(SHELLS)})")
    from typer._completion_shared import get_completion_script  # typer's own scripts, as --install-completion writes

    print(get_completion_script(prog_name="golfq", complete_var="_GOLFQ_COMPLETE", shell=shell).rstrip("\n"))


def _say(message: str) -> None:
    from golfq.cli.console import shown  # a message may quote user text: a name, a key, a value

    sys.stderr.write(f"golfq: {shown(' '.join(str(message).split()))}\n")


def users_to_fix(error: Exception) -> str | None:
    """One line for an error from below golfq that the user fixes (credentials, permissions), else None."""
    modal_errors = sys.modules.get("modal.exception")  # only when a modal:// queue loaded Modal's client
    if modal_errors is not None and isinstance(error, modal_errors.AuthError):
        return ("Modal has no valid credentials here: run `modal token new` (or set MODAL_TOKEN_ID and "
                f"MODAL_TOKEN_SECRET), then try again ({' '.join(str(error).split())[:160]})")
    if isinstance(error, PermissionError):
        where = error.filename or "a file golfq needs"
        return f"permission denied: {where}; check its permissions (ls -l), or run as a user who may read it"
    return None


def _usage_message(error: click.exceptions.UsageError) -> str:
    path = error.ctx.command_path if error.ctx is not None else "golfq"
    verb = path.removeprefix("golfq").strip()
    return f"{verb + ': ' if verb else ''}{error.format_message()} (see {path} --help)"


def main(argv: list[str] | None = None) -> int:
    """Run `golfq`; returns the exit code (the console script passes it to sys.exit)."""
    command = _plain_help(typer.main.get_command(app))
    try:
        code: Any = command.main(args=argv, prog_name="golfq", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except GolfqError as error:
        _say(str(error))
        return error.exit_code
    except click.exceptions.NoArgsIsHelpError as error:  # bare `golfq` or `golfq ops`: the help, and success
        if help_text := error.format_message().strip():  # rich has printed it already; plain click only returns it
            print(help_text)
        return 0
    except click.exceptions.UsageError as error:
        _say(_usage_message(error))
        return EXIT_BAD_INPUT
    except click.exceptions.ClickException as error:
        _say(error.format_message())
        return error.exit_code
    except (Abort, KeyboardInterrupt):
        _say("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0  # `golfq events | head`: the reader left; nothing to report
    except Exception as error:
        if (fix := users_to_fix(error)) is not None:
            _say(fix)
            return EXIT_BAD_INPUT
        if _debug():
            raise
        _say(f"internal error: {type(error).__name__}: {error} (GOLFQ_DEBUG=1 shows the traceback)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
