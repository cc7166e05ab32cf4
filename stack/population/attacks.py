"""The attacks of :class:`Scenario`: who sends what, from where, and what the run counts
of it (requests, admissions, the attack's keys, its detection by a block)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.ratelimit import keys
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.limiter import Credential, Subject
from shared.ratelimit.policy import EndpointClass
from stack.platform.frontdoor import DEFAULT_ORIGIN_HEADER, Headers
from stack.population.actors import Actor, ipv4, random_iid
from stack.population.model import APP_AGENTS, PopulationConfig, Scenario, User

if TYPE_CHECKING:
    from stack.population.run import Run

BOT_AGENT = "python-requests/2.31.0"

SINGLE_SOURCE = "203.0.113.7"
PUPPET_ADDRESS = "203.0.113.23"
STUFFING_ADDRESS = "203.0.113.99"
BYPASS_ADDRESS = "203.0.113.66"
SWEEP_NETWORK = "2001:db8:bad:1"
"""The attacker's /64 (its first four groups)."""
PUPPETS = 25
"""Fresh accounts behind the sock-puppet address, one call a minute each."""


class Attacks:
    """The attackers of one run's scenario (none for :data:`Scenario.NONE`)."""

    def __init__(self, run: Run, config: PopulationConfig, scenario: Scenario) -> None:
        self.run = run
        self.cfg = config
        self.scenario = scenario
        self.rng = run.attack_rng

    def _attack(self, t: float, admitted: bool) -> None:
        tally = self.run.attack_minutes.setdefault(int(t // 60), [0, 0])
        tally[0] += 1
        tally[1] += int(admitted)

    def _tokenless(self, t: float, client: ClientInfo) -> None:
        verdict = self.run.limiter().door(client, self.run.now(t), Credential.NONE)
        self.run.attack_keys.add(client.ip)
        self._attack(t, not verdict.retry_ms)

    def start(self, baseline_sources: int) -> None:
        """The scenario's attackers, from the end of the warm-up to the end of the run;
        ``baseline_sources``: the legitimate traffic's distinct addresses."""
        cfg, rng, s = self.cfg, self.rng, self.scenario
        begin, until = float(self.run.attack_start), float(self.run.end)
        flood = cfg.flood_per_min * cfg.attack_scale
        baseline_ips = max(50, baseline_sources)
        actors: list[Actor] = []
        if s is Scenario.SINGLE_SOURCE:
            self.run.expected_key = SINGLE_SOURCE
            forms = itertools.cycle((SINGLE_SOURCE, f"::ffff:{SINGLE_SOURCE}"))
            actors.append(
                Actor(
                    flood,
                    lambda t: self._tokenless(t, self.run.front.through(next(forms), BOT_AGENT)),
                    rng,
                )
            )
        elif s in (Scenario.DISTRIBUTED, Scenario.UA_ROTATING):
            count = math.ceil(cfg.distributed_ips_factor * baseline_ips)
            rotating = s is Scenario.UA_ROTATING
            per = (
                cfg.ua_rotating_per_address_per_min
                if rotating
                else cfg.distributed_per_address_per_min
            )
            for i in range(count):
                address = ipv4(46 if rotating else 45, i)
                actors.append(Actor(per, self._bot_fire(address, rotating), rng))
        elif s is Scenario.SOCK_PUPPETS:
            for p in range(PUPPETS):
                puppet = User(f"puppet-{p}", PUPPET_ADDRESS, BOT_AGENT, established=False)
                actors.append(Actor(1.0, self._puppet_fire(puppet), rng, even=True))
            actors.append(
                Actor(
                    flood,
                    lambda t: self._tokenless(t, self.run.front.through(PUPPET_ADDRESS, BOT_AGENT)),
                    rng,
                )
            )
        elif s is Scenario.IPV6_SWEEP:

            def sweep(t: float) -> None:
                address = f"{SWEEP_NETWORK}:{random_iid(rng)}"
                self._tokenless(t, self.run.front.through(address, BOT_AGENT, cache=False))

            actors.append(Actor(flood, sweep, rng))
        elif s is Scenario.SELF_REPORTED_BRUTE_FORCE:
            nat = self.run.nats[0] if self.run.nats else ipv4(198, 1)
            attacker = User("bf-self-reporter", nat, APP_AGENTS[0], established=True, nat=True)
            per_min = cfg.brute_force_per_min * cfg.attack_scale
            actors.append(Actor(per_min, self._pin_fire(attacker), rng, even=True))
        elif s in (Scenario.CREDENTIAL_STUFFING, Scenario.CREDENTIAL_STUFFING_SHARED):
            shared = s is Scenario.CREDENTIAL_STUFFING_SHARED
            address = (
                (self.run.nats[0] if self.run.nats else ipv4(198, 1))
                if shared
                else STUFFING_ADDRESS
            )
            actors.append(
                Actor(cfg.stuffing_per_min * cfg.attack_scale, self._login_fire(address), rng)
            )
        elif s in (Scenario.BYPASS_LOAD_BALANCER, Scenario.BYPASS_CLOUDFLARE):
            self.run.expected_key = BYPASS_ADDRESS
            actors.append(Actor(flood, self._bypass_fire(), rng))
        for actor in actors:
            actor.until = until
            self.run.add(actor, begin)

    def _bot_fire(self, address: str, rotating: bool) -> Callable[[float], None]:
        def fire(t: float) -> None:
            if rotating:
                agent = f"Mozilla/5.0 (X11; Linux x86_64) rv/{self.rng.getrandbits(48):x}"
                client = self.run.front.through(address, agent, cache=False)
            else:
                client = self.run.front.through(address, BOT_AGENT)
            self._tokenless(t, client)

        return fire

    def _puppet_fire(self, puppet: User) -> Callable[[float], None]:
        def fire(t: float) -> None:
            now = self.run.now(t)
            client = self.run.front.through(puppet.address, puppet.agent)
            limiter = self.run.limiter()
            self.run.attack_keys.add(client.ip)
            if limiter.door(client, now, Credential.USER).retry_ms:
                self._attack(t, False)
                return
            subject = Subject(puppet.uid, client, door_counted=True, established=False)
            self._attack(t, limiter.decide(EndpointClass.GENERAL, subject, now).allowed)

        return fire

    def _pin_fire(self, attacker: User) -> Callable[[float], None]:
        """A wallet PIN attempt (a wallet-class request); when it gets through, the PIN is
        wrong and the client reports its own failure (pack391_walletBruteForceShield)."""

        def fire(t: float) -> None:
            now = self.run.now(t)
            client = self.run.front.through(attacker.address, attacker.agent)
            subject = Subject(attacker.uid, client, door_counted=True, established=True)
            limiter = self.run.limiter()
            allowed = not limiter.door(client, now, Credential.USER).retry_ms and (
                limiter.decide(EndpointClass.WALLET, subject, now).allowed
            )
            self._attack(t, allowed)
            if not allowed:
                return
            report = self.run.limiter()
            if report.door(client, now, Credential.USER).retry_ms:
                return
            if not report.decide(EndpointClass.GENERAL, subject, now).allowed:
                return
            self.run.service.record_attempt("wallet", attacker.uid, client.ip, True, now)
            if self.run.redis.exists(keys.block("bf", "user", attacker.uid)):
                self.run.detected(t)

        return fire

    def _login_fire(self, address: str) -> Callable[[float], None]:
        """A login for another account through the app's auth backend (``@rate_limited
        ("auth")``, no user yet); the backend sees the wrong password and reports it
        (``record_server_failure``)."""
        accounts = itertools.count()

        def fire(t: float) -> None:
            now = self.run.now(t)
            client = self.run.front.through(address, BOT_AGENT)
            self.run.attack_keys.add(client.ip)
            decision = self.run.limiter().decide(EndpointClass.AUTH, Subject(None, client), now)
            self._attack(t, decision.allowed)
            if not decision.allowed:
                return
            account = f"victim-{next(accounts)}"
            self.run.service.record_server_failure("auth", None, client.ip, now, account=account)
            if self.run.redis.exists(keys.block("bf", "ip", client.ip)):
                self.run.detected(t)

        return fire

    def _bypass_fire(self) -> Callable[[float], None]:
        rng = self.rng
        cloudflare = self.scenario is Scenario.BYPASS_CLOUDFLARE

        def fire(t: float) -> None:
            octets = (rng.randrange(1, 224), rng.randrange(256), rng.randrange(256))
            forged = ".".join(str(o) for o in (*octets, rng.randrange(1, 255)))
            headers: Headers = [("User-Agent", BOT_AGENT), ("X-Forwarded-For", forged)]
            if cloudflare:
                headers += [
                    ("CF-Connecting-IP", forged),
                    ("CF-IPCountry", "US"),
                    (DEFAULT_ORIGIN_HEADER, "a guess"),
                ]
            else:
                headers.append(("X-Client-Region", "US"))
            self._tokenless(t, self.run.front.around(BYPASS_ADDRESS, headers))

        return fire
