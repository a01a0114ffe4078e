"""The `golfq` command: composes the producer, worker and ops verbs (nothing imports ops).

Optional parts (the trainer's `data`, Modal's `modal` and `skill`, and `demo`) are imported only when invoked, and left out when their module is missing
or broken, so a missing extra never breaks the CLI. Errors print one line on
stderr: exit 2 for bad input or usage, 1 when a job failed or a wait timed out.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors its own click; older releases use the click package
    from typer import _click as click
except ImportError:  # pragma: no cover - depends on the installed typer
    import click
Abort = getattr(click.exceptions, "Abort", KeyboardInterrupt)  # typer's vendored click has no Abort

from core.broker import BrokerError
from core.spec import SpecError
from ops import cost, drain, export, purge, replay, report, requeue, stats, submission
from producer import cli as producer_cli
from producer.console import EXIT_BAD_INPUT, CliError
from producer.specfile import InputError
from workers import cli as workers_cli

EXIT_INTERNAL = 3
# name -> (module, attribute): a Typer app, or a function that becomes one command.
OPTIONAL = {
    "data": ("workers.golf.cli", "data_app"),
    "demo": ("ops.demo", "run_demo"),
    "modal": ("workers.modal_cli", "modal_cli"),
    "skill": ("producer.skill", "skill_app"),
}


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _load_optional(name: str) -> click.Command | None:
    module_name, attribute = OPTIONAL[name]
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except Exception as error:  # a missing extra or a broken module must not break every other verb
        if os.environ.get("GOLFQ_DEBUG"):
            raise
        sys.stderr.write(f"golfq: `{name}` is unavailable here ({type(error).__name__}: {error})\n")
        return None
    if isinstance(target, typer.Typer):
        command = typer.main.get_command(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class _Root(TyperGroup):
    """Lists the optional verbs whose modules exist; imports one only when it is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        present = [n for n in OPTIONAL if n not in self.commands and _module_exists(OPTIONAL[n][0])]
        return [*super().list_commands(ctx), *present]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in OPTIONAL and _module_exists(OPTIONAL[name][0]):
            command = _load_optional(name)
        return command


app = typer.Typer(
    name="golfq", cls=_Root, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="golfq: an elastic experiment queue. Enqueue specs, run workers, read the Pareto front.",
)
app.registered_commands.extend(producer_cli.app.registered_commands)  # submit, sweep, status, logs, wait, events
app.command("pareto")(report.pareto)
app.command("worker")(workers_cli.worker)
app.command("submission")(submission.submission)

ops_app = typer.Typer(name="ops", no_args_is_help=True, add_completion=False,
                      help="Operate a queue: stats, drain/resume pools, requeue, cancel, replay, purge, export/import.")
ops_app.command("stats")(stats.stats)
ops_app.command("drain")(drain.drain)
ops_app.command("resume")(drain.resume)
ops_app.command("requeue")(requeue.requeue)
ops_app.command("cancel")(requeue.cancel)
ops_app.command("replay")(replay.replay)
ops_app.command("purge")(purge.purge)
ops_app.command("export")(export.export)
ops_app.command("import")(export.import_)
ops_app.command("cost")(cost.cost_command)
app.add_typer(ops_app, name="ops")


def _say(message: str) -> None:
    sys.stderr.write(f"golfq: {' '.join(str(message).split())}\n")


def main(argv: list[str] | None = None) -> int:
    """Run `golfq`; returns the exit code (the console script passes it to sys.exit)."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="golfq", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except CliError as error:
        _say(str(error))
        return error.code
    except (SpecError, InputError, BrokerError) as error:
        _say(str(error))
        return EXIT_BAD_INPUT
    except click.exceptions.UsageError as error:
        where = error.ctx.command_path if error.ctx is not None else "golfq"
        sys.stderr.write(f"{where}: {' '.join(error.format_message().split())} (see {where} --help)\n")
        return EXIT_BAD_INPUT
    except click.exceptions.ClickException as error:
        _say(error.format_message())
        return error.exit_code
    except (Abort, KeyboardInterrupt):
        sys.stderr.write("golfq: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0  # `golfq events | head`: the reader left; nothing to report
    except Exception as error:
        if os.environ.get("GOLFQ_DEBUG"):
            raise
        _say(f"internal error: {type(error).__name__}: {error} (GOLFQ_DEBUG=1 shows the traceback)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
