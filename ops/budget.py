"""Spend caps as operations: set, clear and show a queue's, a pool's or a tag's cap in dollars.

The rule and the ledger are golfq.core.budget; every backend enforces a cap in its claim
step, so a cap set here holds for every worker kind at its next claim.
"""

from __future__ import annotations

from golfq.core.broker import Broker
from golfq.core.budget import BudgetView, ScopeBudget, parse_cap, scope


def set_cap(broker: Broker, usd: object, pool: str | None = None, tag: str | None = None) -> ScopeBudget:
    """Cap the queue (neither pool nor tag), a pool or a tag at `usd` dollars; return the scope as it stands."""
    key, cap = scope(pool, tag), parse_cap(usd)
    broker.set_budget(key, cap)
    return _scope_of(broker.budget(), key)


def clear_cap(broker: Broker, pool: str | None = None, tag: str | None = None) -> bool:
    """Remove a cap; whether there was one."""
    key = scope(pool, tag)
    had = any(s.scope == key and s.cap is not None for s in broker.budget().scopes)
    broker.set_budget(key, None)
    return had


def _scope_of(view: BudgetView, key: str) -> ScopeBudget:
    return next(s for s in view.scopes if s.scope == key)
