"""Brute-force shields and panic passes: the per-attempt half of traffic protection."""

from __future__ import annotations

from datetime import datetime

from functions.ddos import policy
from functions.ddos.ports import Alerts, ProtectionRecords, TrafficState
from shared import thresholds as t
from shared.auth import Caller
from shared.clock import from_ms, ms
from shared.errors import FailedPrecondition
from shared.models.ddos import BlockKind, BlockScope, PanicPassDoc, PanicView, ShieldView


class Shields:
    """Counts wallet and auth attempts (blocking users and addresses that fail too often)
    and grants panic passes."""

    def __init__(self, store: TrafficState, repo: ProtectionRecords, alerts: Alerts) -> None:
        self._store = store
        self._repo = repo
        self._alerts = alerts

    # ------------------------------------------------------------ shields

    def record_server_failure(
        self,
        kind: str,
        uid: str | None,
        ip: str,
        now: datetime,
        account: str | None = None,
    ) -> ShieldView:
        """For server-side flows (a wrong PIN checked by the wallet service, a failed password
        seen by the auth backend): count a failure in a window of its own that no client
        call can clear, and in the address's window of distinct failing accounts
        (``account``: the account the attempt was for, when there is no uid: a hash of the
        login name). Five server-seen failures block the user; failures for
        ``BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS`` distinct accounts block the address, unless it
        is shared (then the block is held for a human, with an alert)."""
        return self._attempt(
            f"{kind}:server", uid, ip, True, now, address_scope=True, account=account
        )

    def record_attempt(
        self, kind: str, uid: str | None, ip: str, failure: bool, now: datetime
    ) -> ShieldView:
        """A client's own report of a wallet/auth attempt: it feeds only the reporting
        user's window (a real attacker never reports its own failures, and one user's
        mistakes must not block everyone behind its address)."""
        return self._attempt(kind, uid, ip, failure, now, address_scope=False)

    def _attempt(
        self,
        kind: str,
        uid: str | None,
        ip: str,
        failure: bool,
        now: datetime,
        *,
        address_scope: bool,
        account: str | None = None,
    ) -> ShieldView:
        out = self._store.shield_attempt(
            kind,
            uid,
            ip,
            failure,
            now,
            window_ms=t.BRUTE_FORCE_WINDOW_SEC * 1000,
            max_failures=t.BRUTE_FORCE_MAX_FAILURES_COUNT,
            block_ms=[sec * 1000 for sec in t.BRUTE_FORCE_BLOCK_SEC],
            offence_memory_ms=t.BRUTE_FORCE_OFFENCE_MEMORY_SEC * 1000,
            success_resets=t.BRUTE_FORCE_SUCCESS_RESETS_PER_WINDOW,
            address_scope=address_scope,
            account=account or uid or "",
            address_min_accounts=t.BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS,
            address_offence_memory_ms=t.BRUTE_FORCE_ADDRESS_OFFENCE_MEMORY_SEC * 1000,
            shared_min_users=t.DDOS_SHARED_ADDRESS_MIN_USERS,
        )
        if out.address_held:
            self._alerts.apply([policy.brute_force_held_alert(kind, ip)], now)
        reason = f"{t.BRUTE_FORCE_MAX_FAILURES_COUNT} failed {kind} attempts"
        evidence = {
            "kind": kind,
            "failures": t.BRUTE_FORCE_MAX_FAILURES_COUNT,
            "windowSec": t.BRUTE_FORCE_WINDOW_SEC,
        }
        for scope, subject, until_ms, offence in (
            (BlockScope.USER, uid, out.user_blocked_until_ms, out.user_offence),
            (BlockScope.IP, ip, out.ip_blocked_until_ms, out.ip_offence),
        ):
            if until_ms and subject:
                self._repo.mirror_block(
                    policy.block_doc(
                        scope,
                        subject,
                        BlockKind.BRUTE_FORCE,
                        reason,
                        offence,
                        now,
                        until_ms,
                        {**evidence, "offence": offence, "blockSec": (until_ms - ms(now)) // 1000},
                    )
                )
        return ShieldView(
            blocked=out.blocked,
            attempts_left=max(0, out.attempts_left),
            blocked_until=from_ms(out.blocked_until_ms) if out.blocked_until_ms else None,
        )

    # ------------------------------------------------------- panic passes

    def panic_pass(self, caller: Caller, now: datetime, min_age_sec: int) -> PanicView:
        """A priority-lane pass for ``caller``, who must be an *established* account
        (:func:`shared.auth.is_established` with ``min_age_sec``): a pass is worth
        something during an attack, so it is not for throwaway accounts (anonymous, or
        signed in minutes ago), nor for staff (their own bucket exempts them from DDoS
        mode on their tools) or services (principals acting for users, never users).
        ``FAILED_PRECONDITION`` otherwise, saying why."""
        if not caller.established(now.timestamp(), min_age_sec):
            raise _not_established(caller, now, min_age_sec)
        uid = caller.uid
        out = self._store.grant_pass(
            uid, now, t.PANIC_PASS_DURATION_SEC * 1000, t.PANIC_PASSES_PER_DAY_COUNT
        )
        if out.newly_granted:
            self._repo.record_pass(
                PanicPassDoc(uid=uid, granted_at=now, expires_at=from_ms(out.expires_at_ms))
            )
        return PanicView(
            granted=out.granted,
            expires_at=from_ms(out.expires_at_ms) if out.granted else None,
            passes_left_today=out.passes_left,
        )


def _not_established(caller: Caller, now: datetime, min_age_sec: int) -> FailedPrecondition:
    """Why ``caller`` may not take a panic pass, as the answer says it."""
    min_age_min = min_age_sec // 60
    rule = (
        "panic passes are for established accounts (signed in with a credential, at least "
        f"{min_age_min} min ago: PACK391_ESTABLISHED_MIN_AGE_MIN)"
    )
    if caller.is_anonymous:
        account, why = "anonymous", "this account is anonymous: sign in with a credential first"
    elif caller.is_staff:
        account, why = (
            "staff",
            "staff accounts have their own staff bucket, exempt from DDoS mode on the ops and "
            "admin functions: a pass adds nothing there",
        )
    elif caller.is_service:
        account, why = (
            "service",
            "a service principal acts for its users and is not one: the user asks for a pass",
        )
    else:
        auth_time = caller.claims.get("auth_time")
        if isinstance(auth_time, int | float) and not isinstance(auth_time, bool):
            age_min = max(0, int((now.timestamp() - float(auth_time)) // 60))
            why = f"this account signed in {age_min} min ago; ask again later"
        else:
            why = "the ID token says nothing of when this account signed in (no auth_time)"
        account = "new"
    return FailedPrecondition(
        f"{rule}: {why}",
        reason="not_established",
        account=account,
        minAgeMin=min_age_min,
    )
