"""The load engine's HTTP/1.1 client: kept-alive connections to one target (asyncio
protocols), one request each at a time. A request is one ``write`` of a pre-built head
plus its JSON body; its response is parsed in ``data_received`` (Content-Length or
chunked) and handed to the recorder there. Error kinds keep aiohttp's names
(``ClientConnectorError``, ``ServerDisconnectedError``) so reports stay comparable."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from functions.load.scenarios import ENDPOINTS, RUN_HEADER

_now = time.monotonic
"""The engine's clock (latency and schedule): full resolution, unlike uvloop's
``loop.time()``, which is the loop's cached millisecond."""

SHED = "shed"
"""The kind of a request the target shed: ``503`` with ``Retry-After``."""

Recorder = Callable[[str, int, float, "str | None"], None]
"""Receives a finished request: endpoint name, second of the run, scheduled start, and
its error kind (None: a success)."""


class Connection(asyncio.Protocol):
    """One kept-alive connection carrying at most one request at a time."""

    __slots__ = (
        "buf", "chunked", "close_after", "due", "http", "name", "need", "pending",
        "retry_after", "sec", "sent_at", "status", "transport", "until_eof",
    )  # fmt: skip

    def __init__(self, http: HttpClient) -> None:
        self.http = http
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.name = ""
        self.sec = 0
        self.due = 0.0
        self.sent_at = 0.0
        self.pending: bytes | None = None
        """The request to write once connected."""
        self.status = 0
        """The response's status once its head is in; 0 while reading the head."""
        self.need = 0
        self.chunked = False
        self.close_after = False
        self.until_eof = False
        self.retry_after = False
        """The response is a 503 with ``Retry-After`` (shed)."""

    def begin(self, name: str, sec: int, due: float, data: bytes) -> None:
        self.name, self.sec, self.due = name, sec, due
        self.status = 0
        self.buf = b""
        self.sent_at = _now()
        if self.transport is None:
            self.pending = data
        else:
            self.transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.pending is not None:
            data, self.pending = self.pending, None
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self not in self.http.busy:
            return  # a late answer to a request already timed out or aborted
        buf = self.buf + data if self.buf else data
        if not self.status:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not self._head(buf[:end]):
                self.http.finish(self, "ClientResponseError", close=True)
                return
            buf = buf[end + 4 :]
        if self.chunked:
            self.buf = buf
            try:
                done = self._chunks_done()
            except ValueError:  # a chunk size that is not hex
                self.http.finish(self, "ClientResponseError", close=True)
                return
            if done:
                self.http.finish(self, None, close=self.close_after)
        elif self.until_eof:
            self.buf = b""
        elif len(buf) >= self.need:
            self.buf = b""
            self.http.finish(self, None, close=self.close_after or len(buf) > self.need)
        else:
            self.need -= len(buf)
            self.buf = b""

    def _head(self, head: bytes) -> bool:
        """Reads the status line and the framing headers; False when malformed."""
        try:
            status = int(head[9:12])
        except ValueError:
            return False
        lower = head.lower()
        self.status = status
        self.chunked = b"\r\ntransfer-encoding: chunked" in lower
        self.close_after = b"\r\nconnection: close" in lower or (
            lower.startswith(b"http/1.0") and b"\r\nconnection: keep-alive" not in lower
        )
        self.until_eof = False
        self.retry_after = status == 503 and b"\r\nretry-after:" in lower
        self.need = 0
        if status < 200 or status in (204, 304) or self.chunked:
            return True
        at = lower.find(b"\r\ncontent-length:")
        if at < 0:
            self.until_eof = self.close_after = True
            return True
        stop = lower.find(b"\r\n", at + 2)
        try:
            self.need = int(lower[at + 17 : stop if stop >= 0 else None])
        except ValueError:
            return False
        return True

    def _chunks_done(self) -> bool:
        """Consumes whole chunks from ``buf``; True once the last one (and trailer) is in."""
        buf = self.buf
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                break
            size = int(buf[:eol].split(b";", 1)[0], 16)
            if size == 0:
                rest = buf[eol + 2 :]
                if rest.startswith(b"\r\n") or b"\r\n\r\n" in rest:
                    self.buf = b""
                    return True
                break
            if len(buf) < eol + 2 + size + 2:
                break
            buf = buf[eol + 2 + size + 2 :]
        self.buf = buf
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        http = self.http
        if self in http.idle:
            http.idle.remove(self)
        if self in http.busy:
            completed = self.status and self.until_eof
            http.finish(self, None if completed else "ServerDisconnectedError", close=False)
        self.transport = None


class HttpClient:
    """Kept-alive HTTP/1.1 connections to one target, one request each at a time."""

    def __init__(
        self, target: str, run_id: str, record: Recorder, loop: asyncio.AbstractEventLoop
    ) -> None:
        """``record``: receives each finished request (name, second, scheduled start,
        error kind or None), on the loop's thread."""
        self.record = record
        self.loop = loop
        parts = urlsplit(target)
        self.host = parts.hostname or "127.0.0.1"
        self.ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        self.port = parts.port or (443 if self.ssl else 80)
        default_port = (parts.scheme, self.port) in (("http", 80), ("https", 443))
        host_header = parts.hostname if default_port else f"{parts.hostname}:{self.port}"
        prefix = parts.path.rstrip("/")
        self.heads = {
            name: (
                f"{e.method} {prefix}{e.path} HTTP/1.1\r\nHost: {host_header}\r\n"
                f"{RUN_HEADER}: {run_id}\r\nUser-Agent: pack391-load\r\n"
                "Accept: */*\r\nContent-Type: application/json\r\nContent-Length: "
            ).encode("ascii")
            for name, e in ENDPOINTS.items()
        }
        self.idle: list[Connection] = []
        self.busy: set[Connection] = set()
        self.connecting: set[asyncio.Future[Any]] = set()

    def start(self, name: str, sec: int, due: float, body: bytes) -> None:
        data = b"%s%d\r\n\r\n%s" % (self.heads[name], len(body), body)
        if self.idle:
            conn = self.idle.pop()
            self.busy.add(conn)
            conn.begin(name, sec, due, data)
            return
        conn = Connection(self)
        self.busy.add(conn)
        conn.begin(name, sec, due, data)
        opening = asyncio.ensure_future(
            self.loop.create_connection(
                lambda: conn,
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=self.host if self.ssl else None,
            )
        )
        self.connecting.add(opening)
        opening.add_done_callback(lambda f: self._opened(f, conn))

    def _opened(self, opening: asyncio.Future[Any], conn: Connection) -> None:
        self.connecting.discard(opening)
        if opening.cancelled():
            self.busy.discard(conn)
        elif opening.exception() is not None:
            if conn in self.busy:
                self.finish(conn, "ClientConnectorError", close=False)
        elif conn not in self.busy and conn.transport is not None:
            conn.transport.close()  # its request timed out (or the run stopped) meanwhile

    def finish(self, conn: Connection, kind: str | None, *, close: bool) -> None:
        """Records ``conn``'s request (latency from its scheduled start) and frees it:
        back to the idle ones, or closed when the request broke it."""
        self.busy.discard(conn)
        conn.pending = None
        broken = close or kind is not None
        if kind is None and conn.status >= 400:
            kind = SHED if conn.retry_after else f"http_{conn.status}"
        self.record(conn.name, conn.sec, conn.due, kind)
        if broken:
            if conn.transport is not None:
                conn.transport.close()
        elif conn.transport is not None and not conn.transport.is_closing():
            self.idle.append(conn)

    def expire(self, timeout_sec: float) -> None:
        """Every request open longer than ``timeout_sec`` is a ``timeout``."""
        cutoff = _now() - timeout_sec
        for conn in [c for c in self.busy if c.sent_at <= cutoff]:
            self.finish(conn, "timeout", close=True)

    async def close(self) -> None:
        """Drops what is in flight (unrecorded, as a cancelled request) and every connection."""
        for opening in self.connecting:
            opening.cancel()
        if self.connecting:
            await asyncio.wait(set(self.connecting), timeout=1.0)
        for conn in [*self.busy, *self.idle]:
            if conn.transport is not None:
                conn.transport.close()
        self.busy.clear()
        self.idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing before the loop does
