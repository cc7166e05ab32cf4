"""Launch-day traffic over real HTTP ("A world that looks like launch day").

:mod:`stack.population` drives the protection core in process, on a simulated clock. This
drives the *edge* in real time: real HTTP requests, each from the loopback address of its
client (on Linux all of 127.0.0.0/8 is loopback, so a client connects *from* 127.0.10.1 to
be that address), through a front door (:class:`stack.platform.frontdoor.FrontDoorProxy`, which
appends the TCP peer to ``X-Forwarded-For`` as Google's front end does) to a functions
server, on a small thread pool. What only this exercises, answered in the callable wire
protocol: the ID token verified at the door (``shared.edge.front_door``), CORS preflights
answered and never counted, the pre-auth bucket's 429 answers, the refusal of held blocks,
and a service principal's checks for its users (``subject``).

A run is a list of :data:`Script` (the requests one client sends in order, each at its
second of the run); :func:`run` plays them and returns one :class:`Answer` per request.
:func:`launch_mix` builds one wave of the legitimate population (:class:`Mix`): a carrier
NAT (one address, many established users, each a few checks of several classes and a
CORS preflight), users on addresses of their own, and an app backend (a service
principal) checking limits for its users at about 10 calls a second from one egress
address. :func:`tokenless_flood` is the attack the callers use most; other attacks are
their own scripts. :func:`legit_denied` and :func:`admitted` judge the answers against the
issue's goals (:data:`stack.population.LEGIT_DENIED_MAX_PCT`,
:data:`stack.population.ATTACK_ADMITTED_MAX_PCT`), :func:`summary` says what happened.
"""

from __future__ import annotations

import enum
import http.client
import json
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from shared.thresholds import RATE_LIMIT_PER_MIN

CHECK = "pack391_checkRateLimit"
SHIELD = "pack391_walletBruteForceShield"

APP_ORIGIN = "https://app.avalo.example"
"""The web app's origin, in its CORS preflights."""


class Kind(enum.StrEnum):
    LEGIT = "legit"
    """A legitimate request: it must never be denied (but for its user's own limit)."""
    ATTACK = "attack"
    PREFLIGHT = "preflight"
    """A browser's CORS preflight (``OPTIONS``): answered, never counted."""


@dataclass(frozen=True)
class Shot:
    """One request: when (seconds after its run starts), from where, what."""

    at: float
    group: str
    """Who sends it, for the report: ``nat``, ``own``, ``backend``, an attack's name."""
    kind: Kind
    source: str
    """The loopback address the client connects from (its address behind the front door)."""
    function: str
    data: Mapping[str, Any] | None = None
    """The callable's ``data``; None: a CORS preflight (``OPTIONS``)."""
    token: str | None = None
    """Sent as ``Authorization: Bearer <token>``; None: no Authorization header."""
    user: str | None = None
    """Whose limit the request counts against: the caller, or the user a service asks
    about (``subject.uid``)."""
    agent: str = ""
    """The client's ``User-Agent`` (none when empty)."""

    @property
    def endpoint_class(self) -> str | None:
        value = (self.data or {}).get("endpointClass")
        return str(value) if value is not None else None


Script = tuple[Shot, ...]
"""Requests one client sends in order, one after the other (most scripts are one request)."""


@dataclass(frozen=True)
class Answer:
    shot: Shot
    status: int
    body: Mapping[str, Any]
    """The JSON answer (empty when there is none: a preflight)."""
    headers: Mapping[str, str]
    """Response headers, names in lower case."""
    sent: float
    """When it was sent (``time.monotonic()``)."""

    @property
    def result(self) -> Mapping[str, Any] | None:
        result = self.body.get("result")
        return result if isinstance(result, Mapping) else None

    @property
    def error(self) -> Mapping[str, Any] | None:
        error = self.body.get("error")
        return error if isinstance(error, Mapping) else None

    @property
    def reason(self) -> str | None:
        """The rate limiter's reason: the decision's, or a refusal's ``details.reason``."""
        if self.result is not None and "reason" in self.result:
            return str(self.result["reason"])
        details = (self.error or {}).get("details")
        if isinstance(details, Mapping) and "reason" in details:
            return str(details["reason"])
        return None

    @property
    def denied(self) -> bool:
        """Refused by the protection: ``RESOURCE_EXHAUSTED`` (at the front door: 429
        ``ip_block``, ``anon_refused`` or ``preauth_limit``, before the SDK sees the request;
        or by the decision), or a check answering ``allowed: false``."""
        if self.error is not None and self.error.get("status") == "RESOURCE_EXHAUSTED":
            return True
        return self.result is not None and self.result.get("allowed") is False


# ---------------------------------------------------------------------------- the wire


def send(base: str, path: str, shot: Shot, timeout: float = 30.0) -> Answer:
    """``shot`` over HTTP to ``base`` + ``path`` from ``shot.source``: a callable POST
    (``{"data": ...}``, the token as a bearer token) or a CORS preflight."""
    url = urlsplit(base)
    assert url.hostname is not None
    connection = http.client.HTTPConnection(
        url.hostname, url.port, timeout=timeout, source_address=(shot.source, 0)
    )
    headers = {"Origin": APP_ORIGIN}
    if shot.agent:
        headers["User-Agent"] = shot.agent
    sent = time.monotonic()
    try:
        if shot.data is None:
            headers["Access-Control-Request-Method"] = "POST"
            headers["Access-Control-Request-Headers"] = "authorization, content-type"
            connection.request("OPTIONS", url.path + path, headers=headers)
        else:
            headers["Content-Type"] = "application/json"
            if shot.token is not None:
                headers["Authorization"] = f"Bearer {shot.token}"
            body = json.dumps({"data": dict(shot.data)}).encode()
            connection.request("POST", url.path + path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    parsed: Any = {}
    if answer_headers.get("content-type", "").startswith("application/json") and raw:
        parsed = json.loads(raw)
    return Answer(shot, response.status, parsed, answer_headers, sent)


def run(
    base: str, scripts: Iterable[Script], path_of: Callable[[str], str], workers: int = 8
) -> list[Answer]:
    """Play ``scripts`` against ``base`` in real time, on ``workers`` threads: each request
    is sent at its second of the run (late when the machine is behind, never early),
    each script's requests in order. ``path_of``: a function's URL path from its name."""
    ordered = sorted(scripts, key=lambda script: script[0].at)
    start = time.monotonic()

    def play(script: Script) -> list[Answer]:
        answers = []
        for shot in script:
            delay = start + shot.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            answers.append(send(base, path_of(shot.function), shot))
        return answers

    with ThreadPoolExecutor(workers, thread_name_prefix="population-http") as pool:
        return [answer for answers in pool.map(play, ordered) for answer in answers]


# ----------------------------------------------------------------------- the population

APP_AGENTS = (
    "Avalo/3.4.0 (iPhone15,2; iOS 17.5) Firebase/10.25",
    "Avalo/3.4.0 (Pixel 8; Android 14) Firebase/21.0",
    "Avalo/3.3.2 (SM-A546B; Android 14) Firebase/21.0",
    "Avalo/3.3.2 (iPhone13,1; iOS 16.7) Firebase/10.22",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari",
)
"""The population's clients (user ``n`` has the ``n % 6``-th): none carries as much as 30 %
of the traffic, so the population is no bot swarm (one fingerprint from 50 addresses)."""

BACKEND_AGENT = "avalo-backend/1.0 (google-cloud-run)"
BOT_AGENT = "python-requests/2.31.0"

NAT_CLASSES = ("general", "swipe", "ai", "wallet", "payment", "auth")
"""The classes a NAT user's checks go through (each user starts at its own place)."""

OWN_CLASSES = ("general", "payment", "swipe", "ai", "payment", "auth", "wallet")
"""The checks of a user on an address of its own, in order, over the waves: two payment
checks within a minute, which DDoS mode's halved limit (payment 1) would deny."""

BACKEND_CLASSES = ("swipe", "general", "ai", "wallet", "payment")
"""The classes the app backend checks for its users, in turn."""


@dataclass(frozen=True)
class Mix:
    """The legitimate population, wave by wave (see :func:`launch_mix`)."""

    waves: tuple[float, ...] = (8.0, 5.0)
    """Seconds of each wave."""
    nat: str = "127.0.10.1"
    """The carrier NAT's one address."""
    nat_users: int = 25
    """Established users behind it: at least 20 makes the address shared."""
    nat_checks: tuple[int, ...] = (3, 2)
    """Checks per NAT user in each wave (every user also sends one preflight a wave)."""
    own: tuple[str, ...] = ("127.0.20.1", "127.0.20.2", "127.0.20.3", "127.0.20.4")
    """Users on addresses of their own, one each."""
    own_checks: tuple[int, ...] = (4, 3)
    """Checks per own-address user in each wave (in the order of :data:`OWN_CLASSES`)."""
    backend: str = "127.0.30.1"
    """The app backend's egress address."""
    backend_subjects: int = 100
    """Users the backend checks limits for, each at an address of its own."""
    backend_per_sec: float = 10.0

    def backend_calls(self, wave: int) -> int:
        return round(self.waves[wave] * self.backend_per_sec)

    def nat_user(self, n: int) -> str:
        return f"nat-{n:02d}"

    def own_user(self, n: int) -> str:
        return f"own-{n}"

    def subject(self, n: int) -> tuple[str, str]:
        """The uid and address of the backend's ``n``-th user."""
        return f"backend-user-{n:03d}", f"198.51.100.{n + 1}"


def _spread(count: int, seconds: float) -> list[float]:
    """``count`` instants evenly over ``seconds``."""
    return [seconds * i / count for i in range(count)]


def launch_mix(
    mix: Mix, wave: int, user_token: Callable[[str], str], service_token: str
) -> list[Script]:
    """Wave ``wave`` (0, 1, ...) of the legitimate population, over ``mix.waves[wave]``
    seconds:

    - the NAT's users, ``mix.nat_checks[wave]`` ``pack391_checkRateLimit`` calls each (the
      classes of :data:`NAT_CLASSES` in turn, from a place of each user's own, continued
      from the earlier waves) and one CORS preflight, all spread evenly over the wave;
    - the own-address users, ``mix.own_checks[wave]`` checks each (:data:`OWN_CLASSES`);
    - the app backend, ``mix.backend_per_sec`` checks a second with ``subject: {uid, ip,
      established: true}`` for its users in turn (:data:`BACKEND_CLASSES` in turn); each
      user is checked in the same class every time (100 users, 5 classes).

    ``user_token(uid)``: an established user's ID token; ``service_token``: the backend's."""
    seconds = mix.waves[wave]

    def agent(n: int) -> str:
        return APP_AGENTS[n % len(APP_AGENTS)]

    scripts: list[Script] = []
    done = sum(mix.nat_checks[:wave])
    nat: list[tuple[int, dict[str, Any]]] = []
    for k in range(mix.nat_checks[wave]):
        for n in range(mix.nat_users):
            cls = NAT_CLASSES[(n + done + k) % len(NAT_CLASSES)]
            nat.append((n, {"endpointClass": cls}))
    for at, (n, data) in zip(_spread(len(nat), seconds), nat, strict=True):
        uid = mix.nat_user(n)
        token = user_token(uid)
        scripts.append((Shot(at, "nat", Kind.LEGIT, mix.nat, CHECK, data, token, uid, agent(n)),))
    half_slot = seconds / mix.nat_users / 2
    for n, at in enumerate(_spread(mix.nat_users, seconds)):  # one preflight each
        uid = mix.nat_user(n)
        preflight = Shot(at + half_slot, "nat", Kind.PREFLIGHT, mix.nat, CHECK, user=uid)
        scripts.append((replace(preflight, agent=agent(n)),))

    done = sum(mix.own_checks[:wave])
    own = [
        (n, OWN_CLASSES[(done + k) % len(OWN_CLASSES)])
        for k in range(mix.own_checks[wave])
        for n in range(len(mix.own))
    ]
    for at, (n, cls) in zip(_spread(len(own), seconds), own, strict=True):
        uid = mix.own_user(n)
        data = {"endpointClass": cls}
        token = user_token(uid)
        shot = Shot(at, "own", Kind.LEGIT, mix.own[n], CHECK, data, token, uid, agent(n))
        scripts.append((shot,))

    done = sum(mix.backend_calls(w) for w in range(wave))
    for j, at in enumerate(_spread(mix.backend_calls(wave), seconds)):
        g = done + j
        n = g % mix.backend_subjects
        uid, ip = mix.subject(n)
        subject = {"uid": uid, "ip": ip, "userAgent": agent(n), "established": True}
        data = {"endpointClass": BACKEND_CLASSES[g % len(BACKEND_CLASSES)], "subject": subject}
        shot = Shot(at, "backend", Kind.LEGIT, mix.backend, CHECK, data, service_token, uid)
        scripts.append((replace(shot, agent=BACKEND_AGENT),))
    return scripts


def tokenless_flood(
    group: str,
    source: str,
    count: int,
    seconds: float,
    *,
    bad_token_every: int = 0,
    endpoint_class: str = "swipe",
) -> list[Script]:
    """``count`` ``pack391_checkRateLimit`` calls from ``source`` without a valid token,
    evenly over ``seconds``; every ``bad_token_every``-th carries a token that does not
    verify (``Bearer not-a-jwt``), which must count as no token at all."""
    data = {"endpointClass": endpoint_class}
    return [
        (
            Shot(
                at,
                group,
                Kind.ATTACK,
                source,
                CHECK,
                data,
                "not-a-jwt" if bad_token_every and i % bad_token_every == 0 else None,
                agent=BOT_AGENT,
            ),
        )
        for i, at in enumerate(_spread(count, seconds))
    ]


# ---------------------------------------------------------------------------- judging


def own_limit_exceeded(answers: Sequence[Answer]) -> set[int]:
    """Indexes (in ``answers``) of the checks whose user had already sent more than the
    class's limit in the trailing 60 s, counting this one: a denial there is the user's own
    ``user_limit``, not someone else's traffic."""
    exceeded: set[int] = set()
    windows: dict[tuple[str, str], deque[float]] = defaultdict(deque)
    for i in sorted(range(len(answers)), key=lambda i: answers[i].sent):
        shot = answers[i].shot
        cls = shot.endpoint_class
        if shot.user is None or cls is None or shot.function != CHECK:
            continue
        window = windows[(shot.user, cls)]
        window.append(answers[i].sent)
        while window[0] <= answers[i].sent - 60:
            window.popleft()
        if len(window) > RATE_LIMIT_PER_MIN[cls]:
            exceeded.add(i)
    return exceeded


def legit_denied(answers: Sequence[Answer]) -> list[Answer]:
    """Legitimate requests denied (``RESOURCE_EXHAUSTED``, or ``allowed: false``), except
    a user's own ``user_limit`` once the user itself sent more than its limit."""
    own = own_limit_exceeded(answers)
    return [
        a
        for i, a in enumerate(answers)
        if a.shot.kind is Kind.LEGIT and a.denied and not (a.reason == "user_limit" and i in own)
    ]


def admitted(answers: Iterable[Answer]) -> list[Answer]:
    """The attack's requests the protection let through (not denied: a token-less request
    answered 401 cost an invocation, so it was admitted)."""
    return [a for a in answers if a.shot.kind is Kind.ATTACK and not a.denied]


def summary(answers: Iterable[Answer]) -> str:
    """One line per group and kind: requests, then HTTP status and reason counts."""
    seen: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for a in answers:
        outcome = f"{a.status}" + (f" {a.reason}" if a.reason else "")
        if a.result is not None and "allowed" in a.result:
            outcome += " allowed" if a.result["allowed"] else " refused"
        seen[(a.shot.group, a.shot.kind.value)][outcome] += 1
    lines = []
    for (group, kind), outcomes in sorted(seen.items()):
        total = sum(outcomes.values())
        parts = ", ".join(f"{o}: {n}" for o, n in sorted(outcomes.items()))
        lines.append(f"{group} ({kind}) {total}: {parts}")
    return "\n".join(lines)
