"""golfq's one error convention: a problem the user can act on is a GolfqError whose
message is one line; the CLI prints it (never a traceback) and exits with its exit code."""

from __future__ import annotations

EXIT_JOB_FAILED, EXIT_BAD_INPUT = 1, 2


class GolfqError(Exception):
    """One line saying what is wrong and where; exit code 2 (bad input) unless said otherwise."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: object, exit_code: int | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        if exit_code is not None:
            self.exit_code = exit_code


class NotFoundError(GolfqError, LookupError):
    """A job (or a config) the queue does not hold."""


class TrackError(GolfqError, ValueError):
    """A track or pool name that names no track, or none given where several have results."""


class SettingsError(GolfqError, ValueError):
    """A GOLFQ_* environment variable holds something golfq cannot use."""
