"""The legitimate population of a run (see :mod:`stack.population`): carrier-NAT users,
IPv6 users, the app backend's subjects and honest heavy users, and how many of their
requests were denied, and why."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.ratelimit.client import ClientInfo, fingerprint, source_key
from shared.ratelimit.limiter import Credential, Subject
from shared.ratelimit.policy import EndpointClass, Reason
from shared.thresholds import RATE_LIMIT_PER_MIN
from stack.population.actors import Actor, ipv4, pick, random_iid
from stack.population.model import (
    APP_AGENTS,
    BACKEND_AGENT,
    BACKEND_CLASS_MIX,
    BACKEND_EGRESS,
    CLASS_MIX,
    HEAVY_CLASSES,
    PopulationConfig,
    User,
)

if TYPE_CHECKING:
    from stack.population.run import Run


class LegitimateTraffic:
    """The legitimate actors of one run, and their tallies."""

    def __init__(self, run: Run, config: PopulationConfig) -> None:
        self.run = run
        self.cfg = config
        self.rng = run.legit_rng
        self.legit = 0
        self.legit_denied = 0
        self.legit_reasons: Counter[str] = Counter()
        self.others = 0
        self.own: dict[tuple[str, EndpointClass], deque[float]] = {}
        self.legit_sources = 0

    def start(self) -> None:
        """Every legitimate actor, from the start of the run."""
        cfg, rng = self.cfg, self.rng
        sources = 0
        for n, nat in enumerate(self.run.nats):
            sources += 1
            for u in range(cfg.users_per_nat):
                draw = rng.random()
                anonymous = draw < cfg.anonymous_share
                new = not anonymous and draw < cfg.anonymous_share + cfg.new_share
                kind = "anon" if anonymous else "new" if new else "user"
                user = User(
                    f"nat{n}-{kind}-{u}",
                    nat,
                    APP_AGENTS[u % len(APP_AGENTS)],
                    established=not (anonymous or new),
                    nat=True,
                )
                self.run.add(Actor(cfg.nat_user_per_min, self._user_fire(user), rng), 0.0)
        for i in range(cfg.ipv6_users):
            sources += 1
            base = f"2001:db8:{(i >> 16) + 1:x}:{i & 0xFFFF:x}"
            user = User(f"v6-{i}", base, APP_AGENTS[i % len(APP_AGENTS)], True, ipv6=True)
            self.run.add(Actor(cfg.ipv6_user_per_min, self._user_fire(user), rng), 0.0)
        for i in range(cfg.backend_subjects):
            if self.run.nats and i % 2 == 0:
                address = self.run.nats[(i // 2) % len(self.run.nats)]
            else:
                address = ipv4(198, 200 + i)
                sources += 1
            user = User(f"sub-{i}", address, APP_AGENTS[i % len(APP_AGENTS)], i % 10 != 9)
            self.run.add(Actor(cfg.backend_subject_per_min, self._service_fire(user), rng), 0.0)
        for c, cls in enumerate(HEAVY_CLASSES):
            for k in range(cfg.heavy_users_per_class):
                sources += 1
                n = c * cfg.heavy_users_per_class + k
                user = User(f"heavy-{cls.value}-{k}", ipv4(192, n), APP_AGENTS[n % 4], True)
                per_min = RATE_LIMIT_PER_MIN[cls.value] * cfg.heavy_share_of_limit
                self.run.add(Actor(per_min, self._user_fire(user, cls), rng, even=True), 0.0)
        self.legit_sources = sources

    def _address(self, user: User) -> str:
        if user.ipv6:
            return f"{user.address}:{random_iid(self.rng)}"
        if user.nat and self.rng.random() < self.cfg.mapped_share:
            return f"::ffff:{user.address}"
        return user.address

    def _user_fire(self, user: User, cls: EndpointClass | None = None) -> Callable[[float], None]:
        def fire(t: float) -> None:
            chosen = cls or pick(self.rng, CLASS_MIX)
            now = self.run.now(t)
            client = self.run.front.through(self._address(user), user.agent, cache=not user.ipv6)
            limiter = self.run.limiter()
            own = self._own(user, chosen, t)
            verdict = limiter.door(client, now, Credential.USER)
            if verdict.retry_ms:
                self._legit_done(user, chosen, own, verdict.reason)
                return
            subject = Subject(user.uid, client, door_counted=True, established=user.established)
            decision = limiter.decide(chosen, subject, now)
            self._legit_done(user, chosen, own, None if decision.allowed else decision.reason)

        return fire

    def _service_fire(self, user: User) -> Callable[[float], None]:
        def fire(t: float) -> None:
            cls = pick(self.rng, BACKEND_CLASS_MIX)
            now = self.run.now(t)
            limiter = self.run.limiter()
            own = self._own(user, cls, t)
            backend = self.run.front.through(BACKEND_EGRESS, BACKEND_AGENT)
            verdict = limiter.door(backend, now, Credential.SERVICE)
            if verdict.retry_ms:
                self._legit_done(user, cls, own, verdict.reason)
                return
            # pack391_checkRateLimit with subject: the user at the user's own address
            client = ClientInfo(
                source_key(user.address, self.run.front.config.ipv6_prefix),
                None,
                fingerprint({"user-agent": user.agent}),
            )
            subject = Subject(user.uid, client, door_counted=False, established=user.established)
            decision = limiter.decide(cls, subject, now)
            self._legit_done(user, cls, own, None if decision.allowed else decision.reason)

        return fire

    def _own(self, user: User, cls: EndpointClass, t: float) -> int:
        """The user's own requests of ``cls`` in the trailing 60 s, this one included."""
        if not user.established:
            return 0
        window = self.own.setdefault((user.uid, cls), deque())
        window.append(t)
        while window[0] <= t - 60:
            window.popleft()
        return len(window)

    def _legit_done(self, user: User, cls: EndpointClass, own: int, reason: Reason | None) -> None:
        self.legit += 1
        if reason is None:
            return
        self.legit_denied += 1
        self.legit_reasons[reason.value] += 1
        within = own <= RATE_LIMIT_PER_MIN[cls.value]
        if user.established and (reason is not Reason.USER_LIMIT or within):
            self.others += 1
