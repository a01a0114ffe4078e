"""The SQLite transaction's spend ledger (golfq.core.budget): tables caps, spent and holds."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from golfq.core.budget import Hold

encode = msgspec.json.Encoder().encode
decode_hold = msgspec.json.Decoder(Hold).decode


class LedgerTx:
    """The ledger half of sqlite.store.Tx, on its connection (inside its transaction)."""

    conn: sqlite3.Connection

    def _pairs(self, sql: str) -> list[tuple]:
        try:
            return self.conn.execute(sql).fetchall()
        except sqlite3.OperationalError as error:  # a version-2 file opened read-only: no budget tables yet
            if "no such table" in str(error):
                return []
            raise

    def caps(self) -> dict[str, float]:
        return dict(self._pairs("SELECT scope, usd FROM caps"))

    def set_cap(self, scope: str, usd: float | None) -> None:
        if usd is None:
            self.conn.execute("DELETE FROM caps WHERE scope = ?", (scope,))
        else:
            self.conn.execute("INSERT INTO caps (scope, usd) VALUES (?, ?) "
                              "ON CONFLICT (scope) DO UPDATE SET usd = excluded.usd", (scope, usd))

    def spent(self) -> dict[str, float]:
        return dict(self._pairs("SELECT scope, usd FROM spent"))

    def add_spent(self, scopes: Sequence[str], usd: float) -> None:
        if usd:
            self.conn.executemany("INSERT INTO spent (scope, usd) VALUES (?, ?) "
                                  "ON CONFLICT (scope) DO UPDATE SET usd = usd + excluded.usd",
                                  [(scope, usd) for scope in scopes])

    def holds(self) -> dict[str, Hold]:
        return {key: decode_hold(body) for key, body in self._pairs("SELECT key, body FROM holds")}

    def set_hold(self, key: str, hold: Hold | None) -> None:
        if hold is None:
            self.conn.execute("DELETE FROM holds WHERE key = ?", (key,))
        else:
            self.conn.execute("INSERT OR REPLACE INTO holds (key, body) VALUES (?, ?)", (key, encode(hold)))
