"""Reading events and observations of a Modal queue: full pages (Dict, else Volume), then the state's tail."""

from __future__ import annotations

from golfq.core.backends.modal.log import Log
from golfq.core.backends.modal.records import EVENTS_PER_PAGE, OBSERVATIONS_PER_PAGE
from golfq.core.backends.modal.state import State
from golfq.core.backends.modal.store import decode
from golfq.core.events import Event
from golfq.core.pareto import Observation


def events_after(log: Log, state: State, after_seq: int, limit: int) -> list[Event]:
    last = min(state.seq, after_seq + max(limit, 0))
    out: list[Event] = []
    cursor = max(after_seq, 0)
    while cursor < min(last, state.events_paged):
        page = cursor // EVENTS_PER_PAGE
        stored = log.read_page("events", state.page_gens[page], page, lambda b: decode(b, list[Event]) or [])
        out += [e for e in stored if cursor < e.seq <= last]
        cursor = (page + 1) * EVENTS_PER_PAGE
    out += [e for e in state.events if cursor < e.seq <= last]
    return out


def observations_after(log: Log, state: State, after: int) -> list[tuple[int, Observation]]:
    out: list[tuple[int, Observation]] = []
    cursor = after
    while cursor < state.obs_paged:
        page = cursor // OBSERVATIONS_PER_PAGE
        stored = log.read_page("obs", state.obs_page_gens[page], page,
                               lambda b: decode(b, list[Observation]) or [])
        first = page * OBSERVATIONS_PER_PAGE
        out += [(first + i + 1, obs) for i, obs in enumerate(stored) if first + i >= cursor]
        cursor = first + OBSERVATIONS_PER_PAGE
    first = state.obs_paged
    out += [(first + i + 1, obs) for i, obs in enumerate(state.observations) if first + i >= cursor]
    return out
