"""Backends, chosen by queue URL: sqlite:///PATH (default), redis://..., modal://APP."""

from __future__ import annotations

import time
from collections.abc import Callable

from golfq.core.broker import Broker, BrokerError
from golfq.core.settings import settings

Clock = Callable[[], float]


def default_url() -> str:
    return settings().queue


def open_broker(url: str | None = None, clock: Clock = time.time) -> Broker:
    """Open the backend a queue URL names; BrokerError (one line) for a URL it can't use."""
    if url is not None and not url.strip():
        raise BrokerError("queue URL is empty: give sqlite:///PATH, redis://HOST:PORT/DB or modal://APP, or leave "
                          "--queue out for the default ($GOLFQ_QUEUE)")
    url = url or default_url()
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "sqlite":
        from golfq.core.backends.sqlite.broker import SqliteBroker

        return SqliteBroker(url, clock=clock)
    if scheme in ("redis", "rediss", "unix"):
        from golfq.core.backends.redis.broker import RedisBroker

        return RedisBroker(url, clock=clock)
    if scheme == "modal":
        from golfq.core.backends.modal.broker import ModalBroker

        return ModalBroker(url, clock=clock)
    raise BrokerError(f"queue URL {url!r}: unknown scheme (use sqlite:///PATH, redis://HOST:PORT/DB or modal://APP)")
