"""`golfq ui`'s HTTP side: a Starlette app serving the page, its static files and a JSON API over one Client.

Every read goes through the client API, so the dashboard serves any backend. Bad requests answer
4xx with `{"error": "<one line>"}`: an unknown job or track 404, a bad filter or parameter 400, an
action while actions are off 403. Actions (cancel, requeue, promote, budget: set or clear a spend
cap) exist only when the app is made with `allow_actions`, and take a JSON body: a cross-site form
cannot send one without a CORS preflight, which this app never grants, and the Host check keeps
DNS-rebinding pages out. `rows_version` in /api/info moves when a row changes (a cap changes rows
with no event), so the page redraws on it rather than on the event sequence.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from golfq import __version__
from golfq.cli.ui import views
from golfq.cli.ui.rows import COLUMNS, JobIndex
from golfq.core.errors import GolfqError
from golfq.core.job import JobState
from golfq.ops import OpsError
from golfq.ops.control import resolve_job_ids
from golfq.producer.client import Client

STATIC = Path(str(resources.files("golfq.cli.ui") / "static"))
MAX_PAGE = 1000
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")


def allowed_hosts(bind: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host names the app answers: loopback, the address it binds (or, bound to every address, this
    machine's own names) and `extra` (`--allowed-host`). Never "any": on a network a page elsewhere could
    otherwise reach it through a rebound DNS name and, with actions on, cancel or promote jobs."""
    import socket

    names = [bind] if bind not in WILDCARD_ADDRESSES else [socket.gethostname(), socket.getfqdn()]
    names += [f"[{name}]" for name in names if ":" in name]
    return list(dict.fromkeys([*LOOPBACK_HOSTS, *names, *extra]))


class Forbidden(GolfqError):
    """An action while the dashboard is read-only (HTTP 403)."""


_encoder = msgspec.json.Encoder()


class FastJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def _error(status: int, message: str) -> Response:
    return FastJSON({"error": message}, status_code=status)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise GolfqError(f"{name}={raw!r}: not a whole number") from None
    if not low <= value <= high:
        raise GolfqError(f"{name}={value}: must be between {low} and {high}")
    return value


class Dashboard:
    """The state one server keeps: the client, the job index, the cached spend, and whether actions are on."""

    def __init__(self, client: Client, work_dir: Path, allow_actions: bool = False) -> None:
        self.client, self.work_dir, self.allow_actions = client, work_dir, allow_actions
        self.index = JobIndex(client)
        self.spend = views.Spend()

    # -- reads (run in a worker thread: every backend's client blocks)

    def info(self, request: Request) -> dict[str, Any]:
        self.index.refresh()
        return {"version": __version__, "queue": self.client.url, "allow_actions": self.allow_actions,
                "seq": self.index.seq, "rows_version": self.index.version, "jobs": len(self.index.rows),
                "columns": list(COLUMNS),
                "hyperparameters": sorted(self.index.hyper), "tracks": self.client.tracks(),
                "states": [s.value for s in JobState]}

    def jobs(self, request: Request) -> dict[str, Any]:
        params = request.query_params
        offset = _int(request, "offset", 0, 0, 10**9)
        limit = _int(request, "limit", 100, 1, MAX_PAGE)
        rows = self.index.query(params.get("filter", ""), params.get("sort", "submitted_at"),
                                params.get("desc", "") in ("1", "true"))
        return {"total": len(rows), "of": len(self.index.rows), "offset": offset, "rows": rows[offset:offset + limit],
                "hyperparameters": sorted(self.index.hyper), "seq": self.index.seq}

    def job(self, request: Request) -> dict[str, Any]:
        return views.job_doc(self.index, self.client, request.path_params["job_id"])

    def log(self, request: Request) -> dict[str, Any]:
        return views.log_doc(self.client, self.work_dir, request.path_params["job_id"])

    def curves(self, request: Request) -> dict[str, Any]:
        raw = request.query_params.get("ids", "")
        ids = [i for i in raw.split(",") if i] if raw else views.running_ids(self.index)
        if not raw and not ids:
            return {"curves": []}
        return views.curves_doc(self.client, self.index, ids)

    def fronts(self, request: Request) -> dict[str, Any]:
        return views.fronts_doc(self.client, self.index)

    def parallel(self, request: Request) -> dict[str, Any]:
        track = request.query_params.get("track", "")
        if not track:
            raise GolfqError("parallel: name a track (track=NAME)")
        return views.parallel_doc(self.index, track)

    def compare(self, request: Request) -> dict[str, Any]:
        params = request.query_params
        return views.compare_view(self.client, self.index, params.get("a", ""), params.get("b", ""))

    def ops(self, request: Request) -> dict[str, Any]:
        return views.ops_doc(self.client, self.spend, self.index)

    # -- actions

    def act(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        if not self.allow_actions:
            raise Forbidden("actions are off: start the dashboard with `golfq ui --allow-actions`")
        action = request.path_params["action"]
        if action in ("cancel", "requeue"):
            ids = body.get("ids")
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                raise GolfqError(f"{action}: the body needs ids, a list of job ids")
            try:
                ids = resolve_job_ids(self.client.broker, ids)
            except OpsError as error:
                raise views.NotFound(f"{action}: {error}") from None
            changed = self.client.cancel(ids) if action == "cancel" else self.client.broker.requeue(ids)
            return {"action": action, "changed": changed}
        if action == "promote":
            source, to = body.get("from"), body.get("to")
            if not isinstance(source, str) or not isinstance(to, str):
                raise GolfqError("promote: the body needs from (a pool or track) and to (a pool)")
            top, seeds = body.get("top", 3), body.get("seeds", 3)
            for key, value in (("top", top), ("seeds", seeds)):
                if type(value) is not int:  # bool is an int subclass; a float or null is no count either
                    raise GolfqError(f"promote: {key} must be a whole number (got {value!r})")
            try:
                done = self.client.promote(source, to, top=top, seeds=seeds)
            except ValueError as error:
                raise GolfqError(f"promote: {error}") from None
            return {"action": action, "promoted": [{"config": p.config, "new": list(p.new)} for p in done]}
        if action == "budget":
            return self.set_budget(body)
        raise views.NotFound(f"no action {action!r} (cancel, requeue, promote, budget)")

    def set_budget(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"usd": 50, "pool": "h100"}` caps a pool (or `"tag"`, or neither: the queue); `"usd": null` clears."""
        unknown = sorted(set(body) - {"usd", "pool", "tag"})
        if unknown or "usd" not in body:
            raise GolfqError("budget: the body needs usd (dollars, or null to clear) and at most a pool or a tag"
                             + (f"; unknown key {unknown[0]!r}" if unknown else ""))
        pool, tag = body.get("pool") or None, body.get("tag") or None
        if not isinstance(pool, str | None) or not isinstance(tag, str | None):
            raise GolfqError("budget: pool and tag are names (strings)")
        self.client.set_budget(body["usd"], pool=pool, tag=tag)  # a bad cap or scope: BudgetError, one line
        self.index.checked = 0.0  # the next read marks the jobs this cap holds or lets go
        return {"action": "budget", "budget": views.budget_doc(self.client, self.index)}


Handler = Callable[[Request], dict[str, Any]]


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return FastJSON(await run_in_threadpool(handler, request))
        except views.NotFound as error:
            return _error(404, str(error))
        except Forbidden as error:
            return _error(403, str(error))
        except GolfqError as error:
            return _error(400, str(error))
    return endpoint


def _action_endpoint(dashboard: Dashboard) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "actions take a JSON body (Content-Type: application/json)")
        try:
            body = msgspec.json.decode(await request.body())
        except msgspec.DecodeError as error:
            return _error(400, f"action body: not JSON ({error})")
        if not isinstance(body, dict):
            return _error(400, "action body: a JSON object, please")
        return await _endpoint(partial(dashboard.act, body=body))(request)
    return endpoint


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _unknown(request: Request) -> Response:
    return _error(404, f"no API route {request.url.path}")


def make_app(client: Client, work_dir: Path, allow_actions: bool = False,
             allowed_hosts: list[str] | None = None) -> Starlette:
    """The dashboard's app; allowed_hosts defaults to loopback names (a DNS-rebinding page is refused)."""
    dashboard = Dashboard(client, work_dir, allow_actions)
    api = [Route(f"/api/{path}", _endpoint(handler)) for path, handler in (
        ("info", dashboard.info), ("jobs", dashboard.jobs), ("jobs/{job_id}", dashboard.job),
        ("jobs/{job_id}/log", dashboard.log), ("curves", dashboard.curves), ("fronts", dashboard.fronts),
        ("parallel", dashboard.parallel), ("compare", dashboard.compare), ("ops", dashboard.ops))]
    api.append(Route("/api/actions/{action}", _action_endpoint(dashboard), methods=["POST"]))
    api.append(Route("/api/{rest:path}", _unknown, methods=["GET", "POST"]))
    hosts = allowed_hosts if allowed_hosts is not None else LOOPBACK_HOSTS
    app = Starlette(routes=[Route("/", _index), *api, Mount("/static", StaticFiles(directory=STATIC), name="static")],
                    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])
    app.state.dashboard = dashboard
    return app

