"""The capacity model of docs/scaling-out.md (bench/capacity.py) on a literal cost table:
the arithmetic from measured costs to shards, instances and connector size."""

from __future__ import annotations

from bench import capacity

CASE = "swipe, signed in"
COSTS = {
    "single": {
        CASE: {
            "slots": 2,
            "keys": 4,
            "redisCommands": 11.0,
            "redisCpuUs": 50.0,
            "clientCpuUs": 150.0,
            "netBytes": 600,
        }
    },
    "cluster": {
        CASE: {
            "slots": 2,
            "keys": 4,
            "redisCommands": 11.0,
            "redisCpuUs": 100.0,
            "clientCpuUs": 250.0,
            "netBytes": 600,
        }
    },
}


def test_the_tables_follow_from_the_costs() -> None:
    rows = capacity.rows(COSTS, CASE, 0.8)
    # 1,666 RPS x 50 us = 8 % of one primary; x10 = 83 %: over 60 %, a cluster;
    # shards = ceil(rps x 100 us / 0.6): 1 at 1x, 3 at 10x, 28 at 100x
    assert rows["redis"] == [
        "| 1x (1,666 RPS) | 18,326 | 8 % | yes | 1 (+ a replica each) |",
        "| 10x (16,660 RPS) | 183,260 | 83 % | **no** | 3 (+ a replica each) |",
        "| 100x (166,600 RPS) | 1,832,600 | 833 % | **no** | 28 (+ a replica each) |",
    ]
    # instances = ceil(rps x cpu / 0.6); the cluster client costs 0.1 ms more per request
    assert rows["instances"][:2] == [
        "| 1x | one Redis | 0.80 ms | 3 | 6 | yes | 100 |",
        "| 1x | cluster | 0.90 ms | 3 | 6 | yes | 100 |",
    ]
    assert rows["instances"][-2:] == [
        "| 100x | one Redis | 0.80 ms | 223 | 446 | **no** | 446 |",
        "| 100x | cluster | 0.90 ms | 250 | 500 | **no** | 500 |",
    ]
    # 1,666 x 600 B x 1.5 x 8 = 12 Mbps: the minimum e2-micro connector
    assert rows["network"][0] == "| 1x | 12.0 Mbps | 2 | 2 | e2-micro, min 2 max 2 |"
    assert rows["network"][2] == ("| 100x | 1,199.5 Mbps | 10 | 2 | e2-micro, min 2 max 10 |")
    assert rows["saturation"] == [
        "One primary saturates at about 20,000 decisions/s (12,000 at 60%): 12.0x the "
        "spec's rate. The default ceiling of 100 instances holds 75,000 RPS per callable "
        "(45x the spec's rate)."
    ]
