"""The attacks track: a single-source flood, then a distributed one, each at a chosen
second of a minute."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp

from stack.rehearse.acts.track import Track
from stack.rehearse.settings import (
    ATTACK_CANARY_CLAIMS,
    DEPLOY_CLAIMS,
)

log = logging.getLogger("pack391.rehearse")


class Attacks(Track):
    """``attack_single`` and ``attack_distributed``."""

    def attacks(self) -> None:
        try:
            self._attacks()
        finally:
            self.attacks_started.set()
            self.attacks_done.set()

    def _attacks(self) -> None:
        if self.s.wants(*DEPLOY_CLAIMS):
            self.canary_done.wait(timeout=900)  # the deploy track's own canaries
        if self.s.wants(*ATTACK_CANARY_CLAIMS):
            # the canaries that follow need a passing system_health gate: no service isolated
            self.recovered.wait(timeout=900)
        self._at_second(self.s.attack_second)
        single = self.addr(200, 9)
        self.rec.add("attack.rps", time.time(), 0.0)
        with self.act("attack_single", kind="single_source_flood", address=single,
                      rps=self.s.single_rps):  # fmt: skip
            self.rec.add("attack.rps", time.time(), self.s.single_rps)
            self.attacks_started.set()  # the canaries judged during an attack begin
            asyncio.run(self._flood([single], self.s.single_rps, self.s.attack_sec))
            self.rec.add("attack.rps", time.time(), 0.0)
        time.sleep(20)
        self._at_second(self.s.attack_second)
        many = [self.addr(210 + i // 250, 1 + i % 250) for i in range(self.s.distributed_addresses)]
        with self.act("attack_distributed", kind="distributed_attack", addresses=len(many),
                      rps=self.s.distributed_rps):  # fmt: skip
            self.rec.add("attack.rps", time.time(), self.s.distributed_rps)
            asyncio.run(self._flood(many, self.s.distributed_rps, self.s.attack_sec))
            self.rec.add("attack.rps", time.time(), 0.0)

    @staticmethod
    def _at_second(second: float) -> None:
        """Wait for the next time the clock shows ``second`` past a minute."""
        now = time.time()
        wait = (second - now % 60) % 60
        time.sleep(wait)

    async def _flood(self, addresses: list[str], rps: float, seconds: float) -> None:
        """Unauthenticated callable requests, round-robin over ``addresses``, open model."""
        url = self.stack.url("pack391_checkRateLimit")
        sessions = {
            ip: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=(ip, 0), force_close=True),
                timeout=aiohttp.ClientTimeout(total=10),
            )
            for ip in addresses
        }
        tasks: set[asyncio.Task[None]] = set()

        async def one(ip: str) -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with sessions[ip].post(url, json={"data": {"endpointClass": "general"}}) as r:
                    await r.read()

        try:
            t0 = time.time()
            n = 0
            while True:
                due = t0 + n / rps
                if due >= t0 + seconds:
                    break
                await asyncio.sleep(max(0.0, due - time.time()))
                if len(tasks) < 400:
                    task = asyncio.ensure_future(one(addresses[n % len(addresses)]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                n += 1
            if tasks:
                await asyncio.wait(set(tasks), timeout=10)
        finally:
            for session in sessions.values():
                await session.close()
