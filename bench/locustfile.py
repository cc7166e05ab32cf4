"""Locust's side of the load benchmarks: FastHttpUser at one request per second per
user (``constant_throughput(1)``), so ``--users N`` asks for N requests per second."""

from __future__ import annotations

from locust import FastHttpUser, constant_throughput, task


class SwipeUser(FastHttpUser):
    wait_time = constant_throughput(1)

    @task
    def swipe(self) -> None:
        self.client.post("/swipe", json={"uid": "bench", "targetUid": "p1", "direction": "right"})
