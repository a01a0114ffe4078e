"""One fake Modal workspace served to several processes, for the multi-process contract tests.

    url = start_server()        # modalfake://127.0.0.1:PORT/APP?key=HEX, served by a child process
    broker = connect(url)       # a ModalBroker whose Dicts, Queue and Volume live in that process

The workspace's calls pay a small real latency and lose requests and responses (the
client's retries are played in the server), so processes race for the log's slots
and read back their own lost writes as they would against Modal.
"""

from __future__ import annotations

import secrets
import time
from multiprocessing.managers import BaseManager
from typing import Any
from urllib.parse import parse_qs, urlparse

from golfq.core.broker import Broker

LATENCY = 0.002
_workspace: Any = None

DICT_METHODS = ("get", "put", "update", "pop", "contains", "len", "items", "get_concurrently")
QUEUE_METHODS = ("put", "put_many", "get", "get_many", "len", "clear")
BLOB_METHODS = ("put", "put_many", "get", "delete", "list")


def _fake() -> Any:
    global _workspace
    if _workspace is None:
        from tests.modal_fakes import FakeModal
        from tests.modal_net import Network

        _workspace = FakeModal(net=Network(LATENCY, lost_responses=0.03, lost_requests=0.01, seed=7,
                                           sleep=time.sleep))
    return _workspace


def _dict(name: str, env: str | None) -> Any:
    return _fake().dict(name, env)


def _queue(name: str, env: str | None) -> Any:
    return _fake().queue(name, env)


def _blobs() -> Any:
    return _fake().blobs


class Workspace(BaseManager):
    pass


Workspace.register("dict", callable=_dict, exposed=DICT_METHODS)
Workspace.register("queue", callable=_queue, exposed=QUEUE_METHODS)
Workspace.register("blobs", callable=_blobs, exposed=BLOB_METHODS)


def start_server(app: str = "golfq-mp") -> tuple[str, Workspace]:
    key = secrets.token_hex(8)
    manager = Workspace(address=("127.0.0.1", 0), authkey=key.encode())
    manager.start()
    host, port = manager.address
    return f"modalfake://{host}:{port}/{app}?key={key}", manager


def connect(url: str) -> Broker:
    from golfq.core.backends.modal.broker import ModalBroker

    parsed = urlparse(url)
    key = parse_qs(parsed.query)["key"][0]
    manager = Workspace(address=(parsed.hostname, parsed.port), authkey=key.encode())
    manager.connect()
    blobs = manager.blobs()
    return ModalBroker(f"modal://{parsed.path.strip('/')}", dict_factory=manager.dict, queue_factory=manager.queue,
                       blob_store=blobs)


def open_url(url: str) -> Broker:
    """open_broker, plus the fake workspace's modalfake:// URLs."""
    if url.startswith("modalfake://"):
        return connect(url)
    from golfq.core.backends import open_broker

    return open_broker(url)
