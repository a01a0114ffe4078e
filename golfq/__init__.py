"""golfq: an elastic experiment queue for ML research agents.

The repository's folders are installed under this one import root: `golfq.core`
(domain and storage), `golfq.producer` (the client), `golfq.workers` (everything that
runs leases, and the built-in trainer), `golfq.ops` (operator verbs) and `golfq.cli`.
"""

__version__ = "0.2.0"


def __getattr__(name: str) -> object:
    """`from golfq import Client`, without importing the client (or anything) for `import golfq` alone."""
    if name == "Client":
        from golfq.producer.client import Client

        return Client
    raise AttributeError(f"module 'golfq' has no attribute {name!r}")
