"""A TCP latency proxy in front of the local stack's redis-server ("Redis is slow").

    python -m stack.latency_proxy --listen-port P --upstream 127.0.0.1:R --control-port C

Every byte a client sends is forwarded to the upstream after ``delay`` (0 by default);
answers come back at once, so a Redis round trip takes at least ``delay``. The delay is
pure latency, as on a slow network link (Toxiproxy's ``latency`` toxic): each chunk is
scheduled ``delay`` after it arrived, in order, so pipelined commands are not serialised.
At 0 delay a chunk is written straight to the other side from ``data_received`` (asyncio
protocols, no thread, no per-connection task), which keeps the overhead to one extra
loopback hop; ``bench/`` and the README give the measured figure.

When the upstream goes away (redis-server killed), the client's connection is closed,
exactly as a dead server closes it; a new connection is refused (closed at once) until
the upstream listens again on the same port.

Control channel, HTTP on ``--control-port`` (JSON in and out):

    GET  /health                      {"ok": true, "upstream": "127.0.0.1:R", "connections": N}
    GET  /delay                       {"delayMs": 0.0, "ttlSec": null}
    POST /delay {"delayMs": 200, "ttlSec": 30}
                                      set the delay; with ttlSec it reverts to 0 by itself
                                      after that many seconds (a fault never outlives its
                                      bound, even when whoever set it crashed)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import signal
import socket
import urllib.request
from typing import Any

log = logging.getLogger("pack391.latency_proxy")

CHUNK_LIMIT = 256 * 1024
"""Bytes waiting in a delayed queue before the sending side stops being read."""


class LatencyProxy:
    """The proxy's state: the upstream, the current delay and its expiry."""

    def __init__(self, upstream_host: str, upstream_port: int, delay_ms: float = 0.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._delay_sec = delay_ms / 1000
        self._until: float | None = None
        self.connections = 0

    def delay_sec(self) -> float:
        if self._until is not None and asyncio.get_running_loop().time() >= self._until:
            log.info("delay of %.0f ms expired", self._delay_sec * 1000)
            self._delay_sec, self._until = 0.0, None
        return self._delay_sec

    def set_delay(self, delay_ms: float, ttl_sec: float | None = None) -> None:
        if delay_ms < 0 or (ttl_sec is not None and ttl_sec <= 0):
            raise ValueError("delayMs must be >= 0 and ttlSec > 0")
        self._delay_sec = delay_ms / 1000
        self._until = (
            asyncio.get_running_loop().time() + ttl_sec if ttl_sec and delay_ms > 0 else None
        )
        log.info("delay set to %.0f ms (ttl %s)", delay_ms, ttl_sec)

    def describe(self) -> dict[str, Any]:
        delay = self.delay_sec()
        ttl = None
        if self._until is not None:
            ttl = round(max(0.0, self._until - asyncio.get_running_loop().time()), 3)
        return {"delayMs": delay * 1000, "ttlSec": ttl}

    def client_protocol(self) -> _Side:
        return _Side(self, delayed=True)


class _Side(asyncio.Protocol):
    """One connection of a proxied pair; forwards what it receives to ``peer``."""

    def __init__(self, proxy: LatencyProxy, delayed: bool) -> None:
        self.proxy = proxy
        self.delayed = delayed
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.pending: collections.deque[tuple[float, bytes]] = collections.deque()
        self.pending_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.paused_for_queue = False

    # ------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.delayed:  # a client: connect to the upstream, hold its bytes meanwhile
            self.proxy.connections += 1
            transport.pause_reading()
            asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        upstream = _Side(self.proxy, delayed=False)
        try:
            await loop.create_connection(lambda: upstream, *self.proxy.upstream)
        except OSError as exc:
            log.debug("upstream %s:%d refused: %s", *self.proxy.upstream, exc)
            self._close()
            return
        if self.closed:
            upstream._close()
            return
        self.peer, upstream.peer = upstream, self
        assert self.transport is not None
        self.transport.resume_reading()
        self._schedule()

    def data_received(self, data: bytes) -> None:
        delay = self.proxy.delay_sec() if self.delayed else 0.0
        peer = self.peer
        if delay <= 0 and not self.pending and peer is not None and peer.transport is not None:
            peer.transport.write(data)
            return
        loop = asyncio.get_running_loop()
        send_at = loop.time() + delay
        if self.pending:  # never overtake an earlier chunk (the delay may have shrunk)
            send_at = max(send_at, self.pending[-1][0])
        self.pending.append((send_at, data))
        self.pending_bytes += len(data)
        if self.pending_bytes > CHUNK_LIMIT and self.transport is not None:
            self.paused_for_queue = True
            self.transport.pause_reading()
        self._schedule()

    def eof_received(self) -> bool:
        return False  # close; connection_lost closes the peer (Redis never half-closes)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.delayed:
            self.proxy.connections -= 1
        self.closed = True
        peer = self.peer
        if peer is not None and self.pending and not peer.closed:
            return  # _flush closes the peer once the queue is written
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if peer is not None:
            peer._close()

    # flow control: our transport's buffer is full -> stop reading the peer
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    # ------------------------------------------------------------ delayed queue

    def _schedule(self) -> None:
        if self.timer is None and self.pending and self.peer is not None:
            self.timer = asyncio.get_running_loop().call_at(self.pending[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        peer = self.peer
        if peer is None or peer.transport is None or peer.closed:
            return
        now = asyncio.get_running_loop().time()
        while self.pending and self.pending[0][0] <= now:
            _, data = self.pending.popleft()
            self.pending_bytes -= len(data)
            peer.transport.write(data)
        if self.paused_for_queue and self.pending_bytes <= CHUNK_LIMIT // 2:
            self.paused_for_queue = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()
        if self.pending:
            self._schedule()
        elif self.closed:
            peer._close()

    def _close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


# ---------------------------------------------------------------- control channel


async def _control(
    proxy: LatencyProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    status, body = 200, {}
    try:
        request_line = (await asyncio.wait_for(reader.readline(), 5)).decode("latin-1")
        method, path, *_ = [*request_line.split(), "", ""]
        length = 0
        while True:
            line = await asyncio.wait_for(reader.readline(), 5)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        raw = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
        path = path.split("?", 1)[0]
        if path == "/health" and method == "GET":
            body = {"ok": True, "upstream": "{}:{}".format(*proxy.upstream)}
            body["connections"] = proxy.connections
        elif path == "/delay" and method == "GET":
            body = proxy.describe()
        elif path == "/delay" and method in ("POST", "PUT"):
            data = json.loads(raw or b"{}")
            ttl = data.get("ttlSec")
            proxy.set_delay(float(data.get("delayMs", 0)), float(ttl) if ttl else None)
            body = proxy.describe()
        else:
            status, body = 404, {"error": f"no {method} {path}"}
    except (ValueError, TypeError, AttributeError) as exc:
        status, body = 400, {"error": str(exc)}
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        writer.close()
        return
    payload = json.dumps(body).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def serve(
    proxy: LatencyProxy, listen_port: int, control_port: int, host: str = "127.0.0.1"
) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(proxy.client_protocol, host, listen_port, backlog=1024)
    control = await asyncio.start_server(lambda r, w: _control(proxy, r, w), host, control_port)
    log.info(
        "proxying %s:%d -> %s:%d (control http://%s:%d)",
        host, listen_port, *proxy.upstream, host, control_port,
    )  # fmt: skip
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server, control:
        await stop.wait()


# ---------------------------------------------------------------- client helpers


def set_delay(control_url: str, delay_ms: float, ttl_sec: float | None = None) -> dict[str, Any]:
    """Set the proxy's delay through its control channel; its state afterwards."""
    body = json.dumps({"delayMs": delay_ms, "ttlSec": ttl_sec}).encode()
    request = urllib.request.Request(
        f"{control_url.rstrip('/')}/delay",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        state: dict[str, Any] = json.loads(response.read())
    return state


def get_state(control_url: str, path: str = "/delay") -> dict[str, Any]:
    with urllib.request.urlopen(f"{control_url.rstrip('/')}{path}", timeout=2) as response:
        state: dict[str, Any] = json.loads(response.read())
    return state


def main() -> None:
    from stack.cli.processes import latency_proxy_parser

    args = latency_proxy_parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host, _, port = args.upstream.rpartition(":")
    proxy = LatencyProxy(host, int(port), args.delay_ms)
    asyncio.run(serve(proxy, args.listen_port, args.control_port, args.host))


if __name__ == "__main__":
    main()
