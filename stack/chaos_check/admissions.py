"""The soft-launch market's admissions, checked Jepsen-style against what Firestore and
Redis hold after recovery."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from stack.chaos_check.history import (
    ADMITTED_REASONS,
    REFUSED_REASONS,
    Call,
    Verdict,
    by_start,
    verdict_broken,
    verdict_held,
)


def told_admitted(history: Iterable[Call], country: str) -> list[Call]:
    """Signups of ``country`` answered with a place, in order of their answer."""
    return sorted(
        (
            c
            for c in history
            if c.op == "signup"
            and c.cls == country
            and c.error is None
            and c.result.get("signupAdmitted") is True
            and c.reason in ADMITTED_REASONS
        ),
        key=lambda c: c.t_end,
    )


def admissions(
    history: Sequence[Call],
    country: str,
    limit: int,
    firestore_uids: Iterable[str],
    redis_uids: Iterable[str],
    baseline_uids: Iterable[str] = (),
) -> list[Verdict]:
    """Jepsen-style over the signups of one soft-launch market (no release during the
    run, so admissions only grow): never more than ``limit`` distinct callers told they
    were admitted; Firestore's admissions at most ``limit``; every admission a caller
    was told about is in Firestore; no admission recorded for a caller refused at the
    limit; after recovery (and a sync) Firestore's admissions and Redis's member set
    are the same set. ``baseline_uids`` were admitted before the run."""
    fs, rs, base = set(firestore_uids), set(redis_uids), set(baseline_uids)
    verdicts: list[Verdict] = []

    name = f"never more than trafficLimit={limit} admitted"
    seen: set[str] = set(base)
    broken: Verdict | None = None
    for call in told_admitted(history, country):
        if call.uid is not None:
            seen.add(call.uid)
        if len(seen) > limit:
            broken = verdict_broken(name, f"admission #{len(seen)} told to a caller", call)
            break
    if broken is None and len(fs) > limit:
        broken = verdict_broken(
            name,
            f"Firestore holds {len(fs)} admissions",
            {"country": country, "firestoreCount": len(fs), "uids": sorted(fs - base)[:10]},
        )
    verdicts.append(
        broken
        or verdict_held(name, f"{len(seen)} told admitted, {len(fs)} in Firestore, limit {limit}")
    )

    name = "every acknowledged admission is in Firestore"
    missing = [c for c in told_admitted(history, country) if c.uid not in fs]
    verdicts.append(
        verdict_broken(name, f"{len(missing)} told admitted but not recorded", missing[0])
        if missing
        else verdict_held(name, f"{len(seen - base)} acknowledged, all recorded")
    )

    name = "no admission recorded for a refused caller"
    refused = [
        c
        for c in by_start(history)
        if c.op == "signup"
        and c.cls == country
        and c.error is None
        and c.result.get("signupAdmitted") is False
        and c.reason in REFUSED_REASONS
        and c.uid in fs
        and c.uid not in seen
    ]
    verdicts.append(
        verdict_broken(name, "refused at the limit, yet recorded", refused[0])
        if refused
        else verdict_held(name, "none")
    )

    name = "Firestore admissions == Redis member set after recovery"
    if fs != rs:
        verdicts.append(
            verdict_broken(
                name,
                f"Firestore {len(fs)}, Redis {len(rs)}",
                {
                    "country": country,
                    "onlyInFirestore": sorted(fs - rs)[:10],
                    "onlyInRedis": sorted(rs - fs)[:10],
                },
            )
        )
    else:
        verdicts.append(verdict_held(name, f"{len(fs)} in both"))
    return verdicts
