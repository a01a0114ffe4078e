"""Operator operations as library functions: no command line here (golfq.cli.ops presents them).

Job and pool resolution (control), replay planning (replay), export/import records
(export), purge dates (purge), cost and usage summaries (cost) and front plots (plot).
"""

from __future__ import annotations

from golfq.core.errors import GolfqError


class OpsError(GolfqError, ValueError):
    """An operation refused what it was given (an unknown job or pool, a bad file or date): one line."""
