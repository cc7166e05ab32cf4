"""What a run reports: one :class:`AttackRow` per scenario, and the table of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stack.population.model import (
    ATTACK_ADMITTED_MAX_PCT,
    LEGIT_DENIED_MAX_PCT,
    MEMORY_BUDGET_PER_MILLION_BYTES,
    MEMORY_JUDGED_MIN_REQUESTS,
    Scenario,
)


@dataclass(frozen=True)
class AttackRow:
    """One scenario's figures (see the module's docstring for their definitions)."""

    scenario: str
    legit_requests: int
    legit_denied: int
    legit_denied_by_reason: dict[str, int]
    established_denied_by_others: int
    attack_requests: int
    attack_admitted: int
    detected_after_sec: float | None
    judged_from_sec: float
    """Seconds after the attack began from which admission is judged (the first full
    minute after detection; without a detection, the first full minute of the attack)."""
    attack_judged: int
    attack_admitted_judged: int
    memory_before_bytes: int
    memory_after_bytes: int
    control_growth_bytes: int | None
    expected_key: str | None = None
    attack_keys: int = 0
    key_sample: tuple[str, ...] = ()
    attack_goal: bool = True
    """False when the design lets the attack through on purpose (a held block)."""
    detections: tuple[str, ...] = ()
    warmup_detections: tuple[str, ...] = ()
    """Critical detections before the attack (a busy NAT's single-source flood is one,
    left alone when its established users explain it)."""
    state: str = ""
    """What protection state the run ended in (blocks, lockdown, DDoS mode)."""
    preauth_tracked_max: int = 0
    """Most addresses one instance's pre-auth buckets held."""
    real_sec: float = 0.0
    memory_budget_per_million_bytes: int = MEMORY_BUDGET_PER_MILLION_BYTES
    memory_judged_min_requests: int = MEMORY_JUDGED_MIN_REQUESTS

    @property
    def legit_denied_pct(self) -> float:
        return _pct(self.legit_denied, self.legit_requests)

    @property
    def admitted_judged_pct(self) -> float:
        return _pct(self.attack_admitted_judged, self.attack_judged)

    @property
    def memory_growth_bytes(self) -> int:
        return self.memory_after_bytes - self.memory_before_bytes

    @property
    def memory_net_bytes(self) -> int:
        """Growth beyond the control run's over the same window (raw without a control)."""
        return self.memory_growth_bytes - (self.control_growth_bytes or 0)

    @property
    def memory_per_million_bytes(self) -> float | None:
        if not self.attack_requests:
            return None
        return max(0, self.memory_net_bytes) * 1_000_000 / self.attack_requests

    @property
    def key_ok(self) -> bool | None:
        """Bypass scenarios: every attack request was keyed by the attacker's own address."""
        if self.expected_key is None:
            return None
        return self.key_sample == (self.expected_key,) and self.attack_keys == 1

    def goals(self) -> dict[str, str]:
        """PASS / FAIL / n/a per goal: ``legit``, ``attack``, ``memory``, ``key``."""
        legit = (
            self.legit_denied_pct <= LEGIT_DENIED_MAX_PCT and self.established_denied_by_others == 0
        )
        if self.scenario == Scenario.NONE or not self.attack_goal:
            attack = "n/a"
        else:
            attack = _verdict(
                self.attack_judged > 0 and self.admitted_judged_pct <= ATTACK_ADMITTED_MAX_PCT
            )
        per_million = self.memory_per_million_bytes
        if per_million is None or self.attack_requests < self.memory_judged_min_requests:
            memory = "n/a"
        else:
            memory = _verdict(per_million <= self.memory_budget_per_million_bytes)
        key = "n/a" if self.key_ok is None else _verdict(self.key_ok)
        return {"legit": _verdict(legit), "attack": attack, "memory": memory, "key": key}

    def passed(self) -> bool:
        return "FAIL" not in self.goals().values()

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "legitRequests": self.legit_requests,
            "legitDenied": self.legit_denied,
            "legitDeniedPct": round(self.legit_denied_pct, 4),
            "legitDeniedByReason": self.legit_denied_by_reason,
            "establishedDeniedByOthers": self.established_denied_by_others,
            "attackRequests": self.attack_requests,
            "attackAdmitted": self.attack_admitted,
            "detectedAfterSec": self.detected_after_sec,
            "judgedFromSec": self.judged_from_sec,
            "attackJudged": self.attack_judged,
            "attackAdmittedJudged": self.attack_admitted_judged,
            "attackAdmittedJudgedPct": round(self.admitted_judged_pct, 4),
            "memoryBeforeBytes": self.memory_before_bytes,
            "memoryAfterBytes": self.memory_after_bytes,
            "memoryGrowthBytes": self.memory_growth_bytes,
            "controlGrowthBytes": self.control_growth_bytes,
            "memoryNetBytes": self.memory_net_bytes,
            "memoryPerMillionBytes": self.memory_per_million_bytes,
            "memoryExtrapolation": "linear from the run",
            "expectedKey": self.expected_key,
            "attackKeys": self.attack_keys,
            "keySample": list(self.key_sample),
            "detections": list(self.detections),
            "warmupDetections": list(self.warmup_detections),
            "state": self.state,
            "preauthTrackedMax": self.preauth_tracked_max,
            "realSec": round(self.real_sec, 2),
            "goals": self.goals(),
        }


def _pct(part: int, whole: int) -> float:
    return part * 100 / whole if whole else 0.0


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _mib(n: float) -> str:
    return f"{n / (1024 * 1024):.2f}"


def format_table(rows: Sequence[AttackRow]) -> str:
    """An aligned table of ``rows`` with a PASS/FAIL per goal, and a note per row."""
    head = (
        "scenario",
        "legit",
        "denied",
        "%",
        "est.by others",
        "attack",
        "detected s",
        "admitted after",
        "%",
        "mem net MiB",
        "MiB per M",
        "legit",
        "attack",
        "memory",
        "key",
    )
    table: list[tuple[str, ...]] = [head]
    for r in rows:
        goals = r.goals()
        per_million = None if goals["memory"] == "n/a" else r.memory_per_million_bytes
        table.append(
            (
                r.scenario,
                f"{r.legit_requests:,}",
                f"{r.legit_denied:,}",
                f"{r.legit_denied_pct:.3f}",
                f"{r.established_denied_by_others:,}",
                f"{r.attack_requests:,}",
                "-" if r.detected_after_sec is None else f"{r.detected_after_sec:.1f}",
                f"{r.attack_admitted_judged:,}/{r.attack_judged:,}",
                f"{r.admitted_judged_pct:.2f}",
                _mib(r.memory_net_bytes),
                "-" if per_million is None else _mib(per_million),
                goals["legit"],
                goals["attack"],
                goals["memory"],
                goals["key"],
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = []
    for n, row in enumerate(table):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for r in rows:
        why = ", ".join(f"{k} {v}" for k, v in sorted(r.legit_denied_by_reason.items()))
        keyed = (
            f"; attack keyed by {r.attack_keys} key(s) (expected {r.expected_key}: "
            f"{', '.join(r.key_sample)})"
            if r.expected_key
            else ""
        )
        lines.append(
            f"{r.scenario}: detections [{', '.join(r.detections) or 'none'}] (warm-up: "
            f"[{', '.join(r.warmup_detections) or 'none'}]); {r.state}; "
            f"legit denied [{why or 'none'}]; admitted in all {r.attack_admitted:,}; "
            f"judged from +{r.judged_from_sec:g}s; memory growth {_mib(r.memory_growth_bytes)} "
            f"MiB (control {_mib(r.control_growth_bytes or 0)}){keyed}; {r.real_sec:.1f} s real"
        )
    lines.append(
        f"goals: legit denied <= {LEGIT_DENIED_MAX_PCT} % and no established user denied by "
        f"others' traffic; attack admitted <= {ATTACK_ADMITTED_MAX_PCT} % from the first full "
        f"minute after detection; memory <= {_mib(MEMORY_BUDGET_PER_MILLION_BYTES)} MiB per "
        "million attack requests (net of the control run, extrapolated linearly from the run; "
        f"judged from {MEMORY_JUDGED_MIN_REQUESTS:,} attack requests)"
    )
    return "\n".join(lines)


def all_passed(rows: Iterable[AttackRow]) -> bool:
    return all(row.passed() for row in rows)


def rows_json(rows: Iterable[AttackRow]) -> list[Mapping[str, Any]]:
    return [row.as_json() for row in rows]
