"""A local stand-in for the front end of a deployed function: Google's, a load balancer's
or Cloudflare's.

Deployed, a function never sees its client's TCP connection: Google's front end (GFE)
does, and writes the address it saw at the right of ``X-Forwarded-For``; everything else
the client sent (forged forwarding headers included) is passed through. The rate limiter
decides who the client is from those headers (``PACK391_FRONT_DOOR``, see
:mod:`shared.ratelimit.client`), so it is tested, and can be tried by hand, behind this
small reverse proxy, which forwards the way each front end does:

``google``
    Appends the TCP peer to ``X-Forwarded-For`` (``", "`` separated; the client's own
    lines are joined into one list first, RFC 9110), or creates the header. Nothing
    else changes: a forged ``CF-Connecting-IP`` or ``X-Client-Region`` goes through.
``load-balancer``
    An external Application Load Balancer: appends ``"<peer>, <forwarding rule>"`` and
    sets the country header (``X-Client-Region``, the custom header configured as
    ``{client_region}``) to the peer's country, *appended* after the client's own value
    when it sent one (the worst case: only the right-most value is the balancer's). A
    peer without a known country gets an empty value.
``cloudflare``
    Overwrites ``CF-Connecting-IP`` with the peer and ``CF-IPCountry`` with its country
    (``XX`` when unknown, as Cloudflare does), appends the peer to ``X-Forwarded-For``,
    and connects to its upstream from ``source_address``: chained in front of a
    ``google`` proxy, that is the Cloudflare egress address the function sees at the
    right of ``X-Forwarded-For``, as in production. With ``origin_secret`` it stands in
    for *your* zone: like the Transform Rule that proves it (a "Set static" request
    header), it sets ``origin_header`` to the secret, overwriting whatever the client
    sent. Without it, it is anyone else's Cloudflare (a Worker sends from the same
    ranges) and the header passes through as the client wrote it.

Every method is forwarded with its body and headers (hop-by-hop headers dropped); the
upstream's status, headers and body come back. Countries come from a ``{ip: country}``
mapping, the proxy's stand-in for a geo-IP database.

On Linux all of 127.0.0.0/8 is loopback, so local clients can act as distinct addresses
by connecting *from* 127.0.0.2, 127.0.0.3, ... (``source_address=("127.0.0.2", 0)``).

Try a front-door mode on the local stack (functions server on 5001)::

    PACK391_FRONT_DOOR=google pack391 serve
    python -m stack.platform.frontdoor --mode google --upstream http://127.0.0.1:5001 --port 5002

then call the functions at ``http://127.0.0.1:5002/...`` instead of 5001.
"""

from __future__ import annotations

import argparse
import enum
import http.client
import logging
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from urllib.parse import urlsplit

log = logging.getLogger("pack391.frontdoor")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers that belong to one connection (RFC 9110 section 7.6.1): never forwarded."""

DEFAULT_FORWARDING_RULE = "34.120.0.1"
"""The load balancer's own address it appends after the client's (a fake forwarding rule)."""

DEFAULT_COUNTRY_HEADER = "X-Client-Region"
"""The custom request header a load balancer is configured to set to ``{client_region}``."""

CLOUDFLARE_UNKNOWN_COUNTRY = "XX"
"""What Cloudflare sends in ``CF-IPCountry`` when it has no country for the client."""

DEFAULT_ORIGIN_HEADER = "X-Pack391-Origin-Secret"
"""The header your zone's Transform Rule sets to the origin secret (the default of
``PACK391_CLOUDFLARE_ORIGIN_HEADER``)."""


class Mode(enum.StrEnum):
    """Which front end the proxy behaves like."""

    GOOGLE = "google"
    LOAD_BALANCER = "load-balancer"
    CLOUDFLARE = "cloudflare"


Headers = list[tuple[str, str]]

PLAIN: Headers = [("Content-Type", "text/plain; charset=utf-8")]


def _values(headers: Headers, name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name.lower()]


def _without(headers: Headers, *names: str) -> Headers:
    lowered = {name.lower() for name in names}
    return [(key, value) for key, value in headers if key.lower() not in lowered]


def _appended(headers: Headers, name: str, value: str) -> Headers:
    """``name`` as one line: the request's own lines joined by ``", "``, then ``value``."""
    joined = ", ".join(v.strip() for v in _values(headers, name))
    combined = f"{joined}, {value}" if joined.strip() else value
    return [*_without(headers, name), (name, combined)]


def forwarded_headers(
    mode: Mode,
    headers: Headers,
    peer: str,
    countries: Mapping[str, str],
    *,
    country_header: str = DEFAULT_COUNTRY_HEADER,
    forwarding_rule: str = DEFAULT_FORWARDING_RULE,
    origin_secret: str | None = None,
    origin_header: str = DEFAULT_ORIGIN_HEADER,
) -> Headers:
    """The headers ``mode``'s front end sends upstream for a request from ``peer``
    (hop-by-hop headers, and those the request's ``Connection`` names, removed);
    ``origin_secret``: cloudflare mode, the Transform Rule of your own zone."""
    named = {
        token.strip().lower()
        for value in _values(headers, "connection")
        for token in value.split(",")
        if token.strip()
    }
    kept = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP | named]
    country = countries.get(peer)
    if mode is Mode.GOOGLE:
        return _appended(kept, "X-Forwarded-For", peer)
    if mode is Mode.LOAD_BALANCER:
        kept = _appended(kept, "X-Forwarded-For", f"{peer}, {forwarding_rule}")
        own = ", ".join(v.strip() for v in _values(kept, country_header))
        region = country or ""
        value = f"{own}, {region}" if own else region
        return [*_without(kept, country_header), (country_header, value)]
    kept = _without(kept, "CF-Connecting-IP", "CF-IPCountry")
    proof: Headers = []
    if origin_secret is not None:  # "Set static": the client's own value is replaced
        kept = _without(kept, origin_header)
        proof = [(origin_header, origin_secret)]
    kept = _appended(kept, "X-Forwarded-For", peer)
    return [
        *kept,
        ("CF-Connecting-IP", peer),
        ("CF-IPCountry", country or CLOUDFLARE_UNKNOWN_COUNTRY),
        *proof,
    ]


class FrontDoorProxy:
    """A threaded reverse proxy on ``host`` (a free port unless ``port``) that forwards
    every request to ``upstream`` (a base URL) the way ``mode``'s front end does.

    Use as a context manager, or :meth:`start` / :meth:`stop`; :attr:`url` is its base URL.
    """

    def __init__(
        self,
        mode: Mode | str,
        upstream: str,
        *,
        countries: Mapping[str, str] | None = None,
        country_header: str = DEFAULT_COUNTRY_HEADER,
        forwarding_rule: str = DEFAULT_FORWARDING_RULE,
        source_address: str | None = None,
        origin_secret: str | None = None,
        origin_header: str = DEFAULT_ORIGIN_HEADER,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 30.0,
    ) -> None:
        self.mode = Mode(mode)
        target = urlsplit(upstream)
        if target.scheme != "http" or not target.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.upstream_host = target.hostname
        self.upstream_port = target.port or 80
        self.upstream_path = target.path.rstrip("/")
        self.countries = dict(countries or {})
        self.country_header = country_header
        self.forwarding_rule = forwarding_rule
        self.source_address = source_address
        self.origin_secret = origin_secret
        self.origin_header = origin_header
        self.timeout = timeout
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]!s}:{self.port}"

    def start(self) -> FrontDoorProxy:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                name=f"frontdoor-{self.mode.value}-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FrontDoorProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def forward(
        self, method: str, path: str, headers: Headers, body: bytes | None, peer: str
    ) -> tuple[int, str, Headers, bytes]:
        """One request upstream: (status, reason, headers, body) of the answer."""
        sent = forwarded_headers(
            self.mode,
            headers,
            peer,
            self.countries,
            country_header=self.country_header,
            forwarding_rule=self.forwarding_rule,
            origin_secret=self.origin_secret,
            origin_header=self.origin_header,
        )
        connection = http.client.HTTPConnection(
            self.upstream_host,
            self.upstream_port,
            timeout=self.timeout,
            source_address=(self.source_address, 0) if self.source_address else None,
        )
        try:
            has_host = any(k.lower() == "host" for k, _ in sent)
            connection.putrequest(
                method,
                self.upstream_path + path,
                skip_host=has_host,
                skip_accept_encoding=True,
            )
            for name, value in sent:
                if name.lower() != "content-length":
                    connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            payload = response.read()
            answer = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
            ]
            return response.status, response.reason, answer, payload
        finally:
            connection.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes | None:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline().strip():  # trailers
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = self.headers.get("Content-Length")
                if length is None:
                    return None
                return self.rfile.read(int(length))

            def _proxy(self) -> None:
                try:
                    body = self._body()
                except ValueError:
                    self._answer(400, "Bad Request", PLAIN, b"bad request body\n")
                    return
                try:
                    status, reason, headers, payload = proxy.forward(
                        self.command,
                        self.path,
                        list(self.headers.items()),
                        body,
                        str(self.client_address[0]),
                    )
                except OSError as exc:
                    log.warning("upstream %s failed: %r", proxy.upstream_host, exc)
                    message = f"upstream failed: {exc}\n".encode()
                    self._answer(502, "Bad Gateway", PLAIN, message)
                    return
                self._answer(status, reason, headers, payload)

            def _answer(self, status: int, reason: str, headers: Headers, payload: bytes) -> None:
                self.send_response(status, reason)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy
            do_OPTIONS = do_HEAD = _proxy

            def log_message(self, format: str, *args: object) -> None:
                log.debug("%s %s", self.address_string(), format % args)

            def send_response(self, code: int, message: str | None = None) -> None:
                # no Server/Date of the proxy's own: the upstream's headers are passed on
                self.log_request(code)
                self.send_response_only(code, message)

        return Handler


def _country_pairs(items: Sequence[str]) -> dict[str, str]:
    countries = {}
    for item in items:
        ip, sep, country = item.partition("=")
        if not sep or not ip.strip() or not country.strip():
            raise argparse.ArgumentTypeError(f"--country wants IP=CC, got {item!r}")
        countries[ip.strip()] = country.strip().upper()
    return countries


def main(argv: Sequence[str] | None = None) -> int:
    from stack.cli.processes import frontdoor_parser

    parser = frontdoor_parser()
    args = parser.parse_args(argv)
    try:
        countries = _country_pairs(args.country)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    proxy = FrontDoorProxy(
        args.mode,
        args.upstream,
        countries=countries,
        country_header=args.country_header,
        forwarding_rule=args.forwarding_rule,
        source_address=args.source_address,
        origin_secret=args.origin_secret,
        origin_header=args.origin_header,
        host=args.host,
        port=args.port,
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with proxy:
        print(f"ready: {proxy.mode.value} front door {proxy.url} -> {args.upstream}", flush=True)
        stopping.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
