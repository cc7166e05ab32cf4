"""Group commit for the sandbox's Firestore writes (a database's classic group commit).

A write is queued with a future its request awaits. When no commit is in flight, one
starts at once (on the loop's next turn: nothing is waited for on purpose) with every
write queued so far; while it is in flight, new writes queue and all go in the next
one. A commit is one ``WriteBatch`` (one Commit RPC) of at most
:data:`MAX_WRITES_PER_COMMIT` writes; a larger group is split into several commits sent
at once. A request's future resolves only after the commit holding its write returned:
durability is unchanged. A failed commit fails exactly the writes in it, each waiter
getting the commit's exception (so the caller's error mapping applies as before); a
write the client cannot even encode fails alone, before any commit.

Only independent writes may be coalesced: plain ``set``/``create`` of a document with a
server-generated or otherwise unique id, nobody reading it back in the same request, no
transaction. A commit is atomic, so a write that fails at the backend (a ``create`` of
a document that exists) fails its whole commit: the sandbox's writes are auto-id sets.

Per document, the emulator's CPU and the async client's fall to about a quarter when
writes go 20 to a commit instead of one (``make bench-stack`` measures the stack with
group commit on and off). ``coalesce=False`` commits each write alone (the old path),
counted the same way.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.cloud.firestore_v1.async_batch import AsyncWriteBatch
from google.cloud.firestore_v1.async_client import AsyncClient
from google.cloud.firestore_v1.async_document import AsyncDocumentReference
from google.cloud.firestore_v1.types import common as common_pb
from google.cloud.firestore_v1.types import document as document_pb
from google.cloud.firestore_v1.types import write as write_pb
from google.protobuf import timestamp_pb2

from stack.sdk_private import add_writes, document_path, writes_of_create, writes_of_set

MAX_WRITES_PER_COMMIT = 500
"""Firestore's limit of writes in one Commit RPC."""


@dataclass
class CommitStats:
    """What the coalescer did since it was made."""

    writes: int = 0
    """Writes sent in a commit (a write that failed to encode is not counted)."""
    commits: int = 0
    """Commit RPCs sent."""
    failed_commits: int = 0
    largest_commit: int = 0
    """Most writes in one commit."""

    def as_json(self) -> dict[str, Any]:
        return {
            "writes": self.writes,
            "commits": self.commits,
            "failedCommits": self.failed_commits,
            "largestCommit": self.largest_commit,
            "writesPerCommit": round(self.writes / self.commits, 2) if self.commits else None,
        }


@dataclass
class _Pending:
    ref: AsyncDocumentReference
    doc: dict[str, Any]
    create: bool
    done: asyncio.Future[None]


def new_id() -> str:
    """A new document id: 128 random bits in 32 hex characters (one ``urandom`` call; the
    client's own auto id draws each of its 20 characters from ``SystemRandom``)."""
    return os.urandom(16).hex()


_RawWrite = write_pb.Write.pb()
_RawDocument = document_pb.Document.pb()
_RawValue = document_pb.Value.pb()
_RawPrecondition = common_pb.Precondition.pb()


def _raw_value(value: Any) -> Any:
    """The protobuf ``Value`` of a plain value, or None when it is not one."""
    if value is None:
        return _RawValue(null_value=0)
    if value is True or value is False:
        return _RawValue(boolean_value=value)
    kind = type(value)
    if kind is str:
        return _RawValue(string_value=value)
    if kind is int and -(2**63) <= value < 2**63:
        return _RawValue(integer_value=value)
    if kind is float:
        return _RawValue(double_value=value)
    if kind is datetime and value.tzinfo is not None:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(value)
        return _RawValue(timestamp_value=stamp)
    return None


def writes_for(path: str, doc: dict[str, Any], create: bool = False) -> list[write_pb.Write]:
    """The ``Write`` (one) of a ``set`` (no merge) or ``create`` of ``doc`` at ``path``, the
    same message the client builds. A flat document of plain values (None, bool, int,
    float, str, aware datetime) is encoded straight into protobuf, about four times
    cheaper than the client's proto-plus path, which anything else takes (nested maps,
    arrays, sentinels such as ``SERVER_TIMESTAMP``; an unstorable value raises there)."""
    fields = {}
    for key, value in doc.items():
        raw = _raw_value(value) if type(key) is str and key else None
        if raw is None:
            if create:
                return writes_of_create(path, doc)
            return writes_of_set(path, doc)
        fields[key] = raw
    document = _RawDocument(name=path, fields=fields)
    if create:
        raw_write = _RawWrite(update=document, current_document=_RawPrecondition(exists=False))
    else:
        raw_write = _RawWrite(update=document)
    return [write_pb.Write.wrap(raw_write)]


def split(count: int, most: int = MAX_WRITES_PER_COMMIT) -> list[tuple[int, int]]:
    """The ``[start, end)`` slices of ``count`` writes, at most ``most`` to a commit."""
    return [(start, min(start + most, count)) for start in range(0, count, most)]


class GroupCommit:
    """One per process (per event loop): coalesces independent writes into commits."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        timeout_sec: float,
        coalesce: bool = True,
        max_writes: int = MAX_WRITES_PER_COMMIT,
    ) -> None:
        if not 1 <= max_writes <= MAX_WRITES_PER_COMMIT:
            raise ValueError(f"max_writes must be 1-{MAX_WRITES_PER_COMMIT}")
        self.client = client
        self.timeout_sec = timeout_sec
        self.coalesce = coalesce
        self.max_writes = max_writes
        self.stats = CommitStats()
        self._queue: list[_Pending] = []
        self._committer: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> bool:
        """A commit is being sent (or about to be, this turn of the loop)."""
        return self._committer is not None

    @property
    def queued(self) -> int:
        """Writes waiting for the next commit."""
        return len(self._queue)

    async def set(self, ref: AsyncDocumentReference, doc: dict[str, Any]) -> None:
        """Writes ``doc`` at ``ref`` (replacing it); returns once committed."""
        await self._write(ref, doc, create=False)

    async def create(self, ref: AsyncDocumentReference, doc: dict[str, Any]) -> None:
        """Creates ``doc`` at ``ref``, failing (with its whole commit) if it exists."""
        await self._write(ref, doc, create=True)

    async def _write(self, ref: AsyncDocumentReference, doc: dict[str, Any], create: bool) -> None:
        if not self.coalesce:  # what ref.set/create does: a batch of one
            batch = self.client.batch()
            add_writes(batch, writes_for(document_path(ref), doc, create))
            self._counted(1)
            try:
                await batch.commit(retry=None, timeout=self.timeout_sec)
            except Exception:
                self.stats.failed_commits += 1
                raise
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Pending(ref, doc, create, done))
        if self._committer is None:
            self._committer = loop.create_task(self._commit_queued())
        await done

    async def _commit_queued(self) -> None:
        """Commits whatever is queued, again and again until nothing is."""
        try:
            while self._queue:
                group, self._queue = self._queue, []
                group = [p for p in group if not p.done.done()]  # its request was cancelled
                slices = split(len(group), self.max_writes)
                await asyncio.gather(*(self._commit(group[a:b]) for a, b in slices))
        except BaseException as exc:  # cancelled at shutdown: nobody may wait forever
            for pending in self._queue:
                _fail(pending.done, exc)
            self._queue = []
            raise
        finally:
            self._committer = None

    async def _commit(self, group: list[_Pending]) -> None:
        batch: AsyncWriteBatch = self.client.batch()
        sent: list[_Pending] = []
        for pending in group:
            try:
                path = document_path(pending.ref)
                add_writes(batch, writes_for(path, pending.doc, pending.create))
            except Exception as exc:  # a value Firestore cannot store: this write alone
                _fail(pending.done, exc)
                continue
            sent.append(pending)
        if not sent:
            return
        self._counted(len(sent))
        try:
            await batch.commit(retry=None, timeout=self.timeout_sec)
        except BaseException as exc:
            self.stats.failed_commits += 1
            for pending in sent:
                _fail(pending.done, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for pending in sent:
            if not pending.done.done():
                pending.done.set_result(None)

    def _counted(self, writes: int) -> None:
        self.stats.commits += 1
        self.stats.writes += writes
        self.stats.largest_commit = max(self.stats.largest_commit, writes)

    async def drain(self) -> None:
        """Waits until no commit is in flight (at shutdown: the last writes land)."""
        while (committer := self._committer) is not None:
            await asyncio.wait([committer])


def _fail(done: asyncio.Future[None], exc: BaseException) -> None:
    if done.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        done.cancel()
    else:
        done.set_exception(exc)
