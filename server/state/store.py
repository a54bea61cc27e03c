"""The store of settled sessions: the messages of sessions whose every message has reached a final status, read
once from TextMagic and kept, so that follow-up questions are answered from them.

A settled session changes only by being deleted, or by some of its messages being deleted: the session list,
read for every question, leaves out a deleted session; an entry older than ``max_age`` is read again, which
bounds how long a message deleted on its own can still be counted. Sessions not settled are always read from
TextMagic. It is a cache: any replica may keep its own, and nothing is wrong without it.

Kept compact: what reports, recipients and finding use of each message, never its text (the session has it).
In memory by default, bounded (the least recently used sessions go first); or in SQLite on disk, for servers a
host restarts with every launch. The file holds phone numbers and names: it is created readable by its owner
only, and ``textmagic-sessions-mcp cache clear`` empties it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import anyio

from server.state.settings import ConfigError, Settings
from server.textmagic.models import MessageOut

# A final status never changes again: delivered, failed (e, f, u), rejected (j, g).
FINAL = frozenset("defujg")
# Identifies this server's SQLite file (PRAGMA application_id), and the layout of its entries (user_version).
APPLICATION_ID = 0x544D5353
LAYOUT = 1


class Message(NamedTuple):
    """One message, as the readers of many messages use it: no text, no avatar, nothing else."""

    id: int
    receiver: str | None
    status: str | None
    message_time: str | None
    price: float | None
    country: str | None
    first_name: str | None
    last_name: str | None
    sender: str | None
    reject_reason: str | None
    deleted: bool

    @classmethod
    def of(cls, message: MessageOut) -> Message:
        # Values many messages share (a country, a sender, a name) are kept once: a store of a million
        # messages would otherwise hold a million copies of "US".
        return cls(
            message.id,
            message.receiver,
            _shared(message.status),
            message.message_time,
            message.price,
            _shared(message.country),
            _shared(message.first_name),
            _shared(message.last_name),
            _shared(message.sender),
            _shared(message.reject_reason),
            bool(message.deleted),
        )


def _shared(text: str | None) -> str | None:
    return sys.intern(text) if text is not None else None


# Bytes of one message in memory besides its own strings: the tuple, its slot in a list, its id and price.
_MESSAGE_BYTES = sys.getsizeof(tuple(range(len(Message._fields)))) + 8 + 28 + 24
# Bytes of an ASCII string besides its characters.
_STRING_BYTES = sys.getsizeof("")


def settled(messages: Iterable[Message]) -> bool:
    """Whether every message has reached a final status (a session with none is not settled: it may start)."""
    seen = False
    for message in messages:
        if message.status not in FINAL:
            return False
        seen = True
    return seen


def footprint(messages: Sequence[Message]) -> int:
    """Bytes the messages take in memory: each tuple and what is its own (the shared values counted nowhere)."""
    own = sum(len(m.receiver or "") + len(m.message_time or "") for m in messages)
    return (_MESSAGE_BYTES + 2 * _STRING_BYTES) * len(messages) + own


@dataclass(frozen=True)
class Entry:
    """A settled session's messages, and when they were read (seconds since the epoch)."""

    messages: tuple[Message, ...]
    read_at: float


class Store(Protocol):
    async def get(self, session_id: int) -> Entry | None:
        """The session's entry if kept and younger than the maximum age."""

    async def put(self, session_id: int, messages: Sequence[Message]) -> None:
        """Keep a settled session's messages, read now."""

    async def kept(self, session_ids: Iterable[int]) -> set[int]:
        """Which of these sessions have an entry young enough to answer from."""

    async def clear(self) -> int:
        """Forget everything; how many sessions were kept."""


class MemoryStore:
    """Entries in this process's memory, at most ``limit_bytes`` of them, least recently used first out."""

    def __init__(self, limit_bytes: int, max_age: float) -> None:
        self._limit = limit_bytes
        self._max_age = max_age
        self._entries: OrderedDict[int, tuple[Entry, int]] = OrderedDict()
        self.size = 0

    async def get(self, session_id: int) -> Entry | None:
        kept = self._entries.get(session_id)
        if kept is None:
            return None
        if time.time() - kept[0].read_at > self._max_age:
            self._drop(session_id)
            return None
        self._entries.move_to_end(session_id)
        return kept[0]

    async def put(self, session_id: int, messages: Sequence[Message]) -> None:
        size = footprint(messages)
        if size > self._limit:
            return
        self._drop(session_id)
        self._entries[session_id] = (Entry(tuple(messages), time.time()), size)
        self.size += size
        while self.size > self._limit:
            self._drop(next(iter(self._entries)))

    async def kept(self, session_ids: Iterable[int]) -> set[int]:
        now = time.time()
        return {
            i
            for i in session_ids
            if (e := self._entries.get(i)) is not None and now - e[0].read_at <= self._max_age
        }

    async def clear(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        self.size = 0
        return count

    def close(self) -> None:
        self._entries.clear()

    def _drop(self, session_id: int) -> None:
        kept = self._entries.pop(session_id, None)
        if kept is not None:
            self.size -= kept[1]


class SqliteStore:
    """Entries in a SQLite file, at most ``limit_bytes`` of compressed entries, least recently used first out.
    Every access runs in a worker thread: the event loop never waits for the disk."""

    def __init__(self, path: Path, limit_bytes: int, max_age: float) -> None:
        self._path = path
        self._limit = limit_bytes
        self._max_age = max_age
        self._lock = threading.Lock()
        self._db = _open(path)

    async def get(self, session_id: int) -> Entry | None:
        return await anyio.to_thread.run_sync(self._get, session_id)

    async def put(self, session_id: int, messages: Sequence[Message]) -> None:
        await anyio.to_thread.run_sync(self._put, session_id, messages)

    async def kept(self, session_ids: Iterable[int]) -> set[int]:
        return await anyio.to_thread.run_sync(self._kept, list(session_ids))

    async def clear(self) -> int:
        return await anyio.to_thread.run_sync(self._clear)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _get(self, session_id: int) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT read_at, messages FROM entries WHERE session_id = ? AND read_at >= ?",
                (session_id, time.time() - self._max_age),
            ).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE entries SET used_at = ? WHERE session_id = ?", (time.time(), session_id))
            self._db.commit()
        read_at, blob = row
        try:
            columns = json.loads(zlib.decompress(blob))
            if len(columns) != len(Message._fields):
                return None
            # Built as tuples directly: a million messages are read in a few seconds, not twice that.
            made = tuple.__new__
            return Entry(
                tuple([made(Message, fields) for fields in zip(*columns, strict=True)]), float(read_at)
            )
        except (ValueError, TypeError, zlib.error):
            # Spoilt on disk: read again from TextMagic, as if it had never been kept.
            return None

    def _put(self, session_id: int, messages: Sequence[Message]) -> None:
        # By column: shorter to decode than a list per message.
        columns = [list(column) for column in zip(*messages, strict=True)] if messages else []
        blob = zlib.compress(json.dumps(columns, separators=(",", ":")).encode(), 6)
        if len(blob) > self._limit:
            return
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO entries (session_id, read_at, used_at, size, messages) VALUES (?, ?, ?, ?, ?)",
                (session_id, now, now, len(blob), blob),
            )
            total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
            while total > self._limit:
                oldest = self._db.execute(
                    "SELECT session_id, size FROM entries ORDER BY used_at LIMIT 1"
                ).fetchone()
                self._db.execute("DELETE FROM entries WHERE session_id = ?", (oldest[0],))
                total -= oldest[1]
            self._db.commit()

    def _kept(self, session_ids: list[int]) -> set[int]:
        found: set[int] = set()
        oldest = time.time() - self._max_age
        with self._lock:
            for start in range(0, len(session_ids), 500):
                chunk = session_ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT session_id FROM entries WHERE read_at >= ? AND session_id IN ({marks})",  # noqa: S608
                    (oldest, *chunk),
                ).fetchall()
                found.update(row[0] for row in rows)
        return found

    def _clear(self) -> int:
        with self._lock:
            count = int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
            self._db.execute("DELETE FROM entries")
            self._db.commit()
            self._db.execute("VACUUM")
        return count


def _open(path: Path) -> sqlite3.Connection:
    """The store's file at ``path``: made (readable by its owner only) if absent; refused, with what to do,
    if it is not a SQLite file this server made."""
    what = f"TEXTMAGIC_CACHE_PATH: {path}"
    if not path.exists():
        try:
            # Created here, owner-only, before SQLite opens it: it will hold phone numbers and names.
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise ConfigError(f"{what} cannot be created ({exc.strerror})") from None
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
        application, layout = (
            db.execute("PRAGMA application_id").fetchone()[0],
            db.execute("PRAGMA user_version").fetchone()[0],
        )
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if application == 0 and layout == 0 and not tables:
            db.executescript(
                f"""
                PRAGMA application_id = {APPLICATION_ID};
                PRAGMA user_version = {LAYOUT};
                PRAGMA journal_mode = WAL;
                CREATE TABLE entries (
                    session_id INTEGER PRIMARY KEY,
                    read_at REAL NOT NULL,
                    used_at REAL NOT NULL,
                    size INTEGER NOT NULL,
                    messages BLOB NOT NULL
                );
                CREATE INDEX entries_by_use ON entries (used_at);
                """
            )
        elif application != APPLICATION_ID:
            db.close()
            raise ConfigError(
                f"{what} is a SQLite file of something else, not this server's store of settled sessions: "
                "point the variable at a new file, or remove that one if it is not needed"
            )
        elif layout != LAYOUT:
            db.close()
            raise ConfigError(
                f"{what} was made by another version of this server: empty it with `textmagic-sessions-mcp "
                "cache clear`, or remove the file"
            )
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            f"{what} is not a readable SQLite file ({exc}): remove it (it is only a cache), or point the variable "
            "at another file"
        ) from None
    return db


def remove_file(path: Path) -> bool:
    """Remove the store's file at ``path`` (with SQLite's journal files); False if there was none. Raises
    ConfigError, leaving it as it is, when it is not this server's store."""
    if not path.exists():
        return False
    try:
        with sqlite3.connect(path) as db:
            ours = db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        db.close()
    except sqlite3.DatabaseError:
        ours = False
    if not ours:
        raise ConfigError(f"TEXTMAGIC_CACHE_PATH: {path} is not this server's store; it was left as it is")
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)
    return True


def check_file(path: Path) -> None:
    """At start: ConfigError unless ``path`` is (or can become) this server's store."""
    _open(path).close()


def open_store(settings: Settings) -> MemoryStore | SqliteStore | None:
    """The store the settings ask for: none (TEXTMAGIC_CACHE_MB=0), on disk (TEXTMAGIC_CACHE_PATH), or in
    memory. Raises ConfigError for a file that is not this server's store."""
    if not settings.cache_mb:
        return None
    limit = settings.cache_mb * 2**20
    if settings.cache_path is not None:
        return SqliteStore(settings.cache_path, limit, settings.cache_max_age)
    return MemoryStore(limit, settings.cache_max_age)
