"""The runner: one scenario on the simulated clock (:class:`Run`: the instances' ticks,
the detector, the report), and :class:`Population`, which runs the control and then each
attack from empty backends."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from functions.ddos.policy import GLOBAL_KINDS
from functions.ddos.redis_store import TrafficStore
from functions.ddos.service import ProtectionService
from functions.ddos.store import ProtectionRepository
from shared.alerts.store import AlertStore
from shared.ratelimit import keys
from shared.ratelimit.limiter import RateLimiter
from stack.population.actors import Actor, ipv4
from stack.population.attacks import Attacks
from stack.population.frontend import FrontEnd, NoGeo, mode_of
from stack.population.legitimate import LegitimateTraffic
from stack.population.model import ATTACKS, PopulationConfig, Scenario
from stack.population.report import AttackRow


class Run:
    """One scenario, from an empty Redis and Firestore."""

    def __init__(
        self,
        client: redis.Redis,
        db: Any,
        config: PopulationConfig,
        scenario: Scenario,
        control_growth_bytes: int | None,
    ) -> None:
        self.cfg = config
        self.scenario = scenario
        self.redis = client
        self.control = control_growth_bytes
        real = datetime.now(UTC)
        self.start = real.replace(second=0, microsecond=0)
        self.limiters = [RateLimiter(client, NoGeo()) for _ in range(max(1, config.instances))]
        self._next = itertools.cycle(self.limiters)
        self.service = ProtectionService(
            TrafficStore(client), ProtectionRepository(db), AlertStore(db, notify=lambda: False)
        )
        self.front = FrontEnd(mode_of(scenario))
        self.legit_rng = random.Random(config.seed)
        self.attack_rng = random.Random(config.seed + 1)
        self.heap: list[tuple[float, int, Actor]] = []
        self.seq = itertools.count()
        self.attack_start = config.warmup_min * 60
        self.end = (config.warmup_min + config.attack_min) * 60
        self.nats = [ipv4(198, 1 + i) for i in range(config.nat_addresses)]
        # tallies
        self.attack_minutes: dict[int, list[int]] = {}
        self.attack_keys: set[str] = set()
        self.detected_at: float | None = None
        self.kinds: set[str] = set()
        self.warmup_kinds: set[str] = set()
        self.memory_before = 0
        self.preauth_max = 0
        self.expected_key: str | None = None
        self.attack_goal = scenario is not Scenario.CREDENTIAL_STUFFING_SHARED
        self.detector_counts = scenario not in (
            Scenario.SELF_REPORTED_BRUTE_FORCE,
            Scenario.CREDENTIAL_STUFFING,
            Scenario.CREDENTIAL_STUFFING_SHARED,
        )
        """Whether the DDoS detector's detections count as this attack's detection (the
        brute-force scenarios are detected by their block)."""
        self.legitimate = LegitimateTraffic(self, config)
        self.attacks = Attacks(self, config, scenario)

    # ------------------------------------------------------------------ driving

    def execute(self) -> AttackRow:
        began = time.perf_counter()
        self.legitimate.start()
        if self.scenario is not Scenario.NONE:
            self.attacks.start(self.legitimate.legit_sources)
        for sec in range(self.end):
            self._tick(sec)
            while self.heap and self.heap[0][0] < sec + 1:
                t, _, actor = heapq.heappop(self.heap)
                actor.fire(t)
                nxt = actor.after(t)
                if nxt < min(actor.until, self.end):
                    heapq.heappush(self.heap, (nxt, next(self.seq), actor))
        for limiter in self.limiters:
            limiter.flush_counters()
        memory_after = self._used_memory()
        return self._row(memory_after, time.perf_counter() - began)

    def add(self, actor: Actor, begin: float) -> None:
        t = actor.first(begin)
        if t < min(actor.until, self.end):
            heapq.heappush(self.heap, (t, next(self.seq), actor))

    def _tick(self, sec: int) -> None:
        """Each simulated second: the counters reach Redis, the detector runs when due, and
        every instance re-reads its block lists."""
        for limiter in self.limiters:
            limiter.flush_counters()
            self.preauth_max = max(self.preauth_max, len(limiter.preauth))
        if sec == self.attack_start:
            self.memory_before = self._used_memory()
        if sec % 60 in self.cfg.detect_at_sec:
            self._detect(sec)
        for limiter in self.limiters:
            limiter.blocked.invalidate()

    def _detect(self, sec: int) -> None:
        report = self.service.detect(self.now(sec))
        if sec < self.attack_start:
            self.warmup_kinds.update(d.kind.value for d in report.detections if d.critical)
            return
        if not self.detector_counts:
            return
        for d in report.detections:
            if not d.critical:
                continue
            if d.kind in GLOBAL_KINDS or self.attack_keys.intersection(d.block_sources):
                self.kinds.add(d.kind.value)
                self.detected(sec)

    def detected(self, t: float) -> None:
        if self.detected_at is None and t >= self.attack_start:
            self.detected_at = t - self.attack_start

    def now(self, t: float) -> datetime:
        return self.start + timedelta(seconds=t)

    def limiter(self) -> RateLimiter:
        return next(self._next)

    def _used_memory(self) -> int:
        return int(self.redis.info("memory")["used_memory"])

    # ------------------------------------------------------------------- report

    def _state(self) -> str:
        now_ms = int(self.now(self.end).timestamp() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcount(keys.BLOCKED_ADDRESSES, now_ms, "+inf")
        pipe.zcount(keys.ANON_REFUSED_ADDRESSES, now_ms, "+inf")
        pipe.exists(keys.ANON_LOCKDOWN)
        pipe.exists(keys.DDOS_MODE)
        blocked, refused, lockdown, mode = pipe.execute()
        bf = sum(1 for _ in self.redis.scan_iter(match=keys.block_pattern("bf"), count=1000))
        users = sum(
            1 for _ in self.redis.scan_iter(match=keys.block_pattern("ddos", "user"), count=1000)
        )
        return (
            f"{blocked} address(es) blocked, {users} user(s) blocked, {refused} refused "
            f"token-less, {bf} brute-force block(s), lockdown {'on' if lockdown else 'off'}, "
            f"DDoS mode {'on' if mode else 'off'}"
        )

    def _row(self, memory_after: int, real_sec: float) -> AttackRow:
        minute0 = self.attack_start // 60
        detected = self.detected_at
        judged_from = 60 if detected is None else math.ceil(detected / 60) * 60
        judged = [0, 0]
        total = [0, 0]
        for m, (n, admitted) in self.attack_minutes.items():
            total[0] += n
            total[1] += admitted
            if (m - minute0) * 60 >= judged_from:
                judged[0] += n
                judged[1] += admitted
        sample = tuple(sorted(self.attack_keys)[:3]) if self.expected_key else ()
        lt = self.legitimate
        return AttackRow(
            scenario=self.scenario.value,
            legit_requests=lt.legit,
            legit_denied=lt.legit_denied,
            legit_denied_by_reason=dict(lt.legit_reasons),
            established_denied_by_others=lt.others,
            attack_requests=total[0],
            attack_admitted=total[1],
            detected_after_sec=self.detected_at,
            judged_from_sec=float(judged_from),
            attack_judged=judged[0],
            attack_admitted_judged=judged[1],
            memory_before_bytes=self.memory_before,
            memory_after_bytes=memory_after,
            control_growth_bytes=self.control,
            expected_key=self.expected_key,
            attack_keys=len(self.attack_keys) if self.expected_key else 0,
            key_sample=sample,
            attack_goal=self.attack_goal,
            detections=tuple(sorted(self.kinds)),
            warmup_detections=tuple(sorted(self.warmup_kinds)),
            state=self._state(),
            preauth_tracked_max=self.preauth_max,
            real_sec=real_sec,
            memory_budget_per_million_bytes=self.cfg.memory_budget_per_million_bytes,
            memory_judged_min_requests=self.cfg.memory_judged_min_requests,
        )


class Population:
    """Runs scenarios against one Redis and one Firestore; ``reset`` empties both before
    each run (each scenario starts from nothing, with its own warm-up)."""

    def __init__(
        self,
        client: redis.Redis,
        db: Any,
        config: PopulationConfig | None = None,
        reset: Callable[[], None] | None = None,
    ) -> None:
        """``client`` must decode responses (``decode_responses=True``), as the core's."""
        self.redis = client
        self.db = db
        self.config = config or PopulationConfig()
        self._reset = reset

    def run(self, scenario: Scenario, control_growth_bytes: int | None = None) -> AttackRow:
        """One scenario from empty backends; ``control_growth_bytes``: the memory growth of
        :data:`Scenario.NONE` over the same window (subtracted for the memory figure)."""
        if self._reset is not None:
            self._reset()
        return Run(self.redis, self.db, self.config, scenario, control_growth_bytes).execute()

    def run_all(
        self,
        scenarios: Iterable[Scenario] = ATTACKS,
        progress: Callable[[AttackRow], None] | None = None,
    ) -> list[AttackRow]:
        """The control, then each of ``scenarios``, its memory net of the control's."""
        control = self.run(Scenario.NONE)
        rows = [control]
        if progress is not None:
            progress(control)
        for scenario in scenarios:
            row = self.run(scenario, control.memory_growth_bytes)
            rows.append(row)
            if progress is not None:
                progress(row)
        return rows
