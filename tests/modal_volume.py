"""A Modal Volume as containers see it: each mounts its own view, a real folder on disk.

Files a container writes stay in its view until it commits; another container sees them
only after it reloads. A commit publishes the files the view changed, added or removed
since its last commit or reload, last writer winning per file; a reload brings in what
others committed and keeps the view's own uncommitted files. Every commit and reload is a
round trip through a tests.modal_net.Network (latency, lost responses retried: both
operations are idempotent).
"""

from __future__ import annotations

import threading
from pathlib import Path

from tests.modal_net import Network


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class FakeVolume:
    """The committed state of one Volume, shared by every view."""

    def __init__(self, net: Network | None = None) -> None:
        self.net = net or Network()
        self.files: dict[str, bytes] = {}
        self.commits = 0
        self._lock = threading.Lock()

    def mount(self, root: Path) -> VolumeView:
        return VolumeView(self, root)


class VolumeView:
    """One container's mount: commit() and reload() as modal.Volume has them."""

    def __init__(self, volume: FakeVolume, root: Path) -> None:
        self.volume, self.root = volume, Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._base: dict[str, bytes] = {}  # the view's files as of its last commit or reload
        self.reload()

    def commit(self) -> None:
        now = _files(self.root)
        changed = {path: data for path, data in now.items() if self._base.get(path) != data}
        removed = [path for path in self._base if path not in now]

        def op() -> None:
            with self.volume._lock:
                self.volume.files.update(changed)
                for path in removed:
                    self.volume.files.pop(path, None)
                self.volume.commits += 1
        self.volume.net.call(op, sum(len(d) for d in changed.values()))
        self._base = now

    def reload(self) -> None:
        def op() -> dict[str, bytes]:
            with self.volume._lock:
                return dict(self.volume.files)
        committed = self.volume.net.call(op, 0, lambda files: sum(len(d) for d in files.values()))
        for path in self._base:
            if path not in committed and (self.root / path).is_file():
                (self.root / path).unlink()  # removed by another container's commit
        for path, data in committed.items():
            local = self.root / path
            if not local.is_file() or local.read_bytes() != data:
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(data)
        self._base = committed
