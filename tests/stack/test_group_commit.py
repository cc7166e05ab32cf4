"""Group commit against the real emulator: concurrent writers share commits, every
write lands, and a failed commit fails exactly the writes in it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers

from stack.group_commit import MAX_WRITES_PER_COMMIT, GroupCommit, new_id, split, writes_for
from stack.platform.procs import free_port
from stack.sandbox import BACKEND_DOWN
from tests.conftest import Backends

COLLECTION = "group_commit_test"


@pytest.mark.parametrize(
    ("count", "most", "expected"),
    [
        (0, 500, []),
        (1, 500, [(0, 1)]),
        (500, 500, [(0, 500)]),
        (501, 500, [(0, 500), (500, 501)]),
        (1200, 500, [(0, 500), (500, 1000), (1000, 1200)]),
        (5, 2, [(0, 2), (2, 4), (4, 5)]),
    ],
)
def test_split_table(count: int, most: int, expected: list[tuple[int, int]]) -> None:
    assert split(count, most) == expected


AT = datetime(2026, 11, 30, 17, 5, 3, 123456, tzinfo=UTC)
PATH = "projects/p/databases/(default)/documents/swipes/abc"


@pytest.mark.parametrize(
    "doc",
    [
        {"uid": "u1", "targetUid": "u2", "direction": "right", "loadRunId": "r", "at": AT},
        {"uid": None, "chatId": "c", "tokens": 5, "ok": True, "no": False, "amount": 1.5},
        {"big": 2**63 - 1, "small": -(2**63), "empty": "", "naive": datetime(2026, 1, 1)},
        {"nested": {"a": 1}, "list": [1, "x"]},  # the client's own path
        {"at": firestore.SERVER_TIMESTAMP, "n": 1},  # a transform: the client's own path
        {},
    ],
)
def test_writes_are_the_clients_own(doc: dict[str, Any]) -> None:
    assert writes_for(PATH, doc) == _helpers.pbs_for_set_no_merge(PATH, doc)
    assert writes_for(PATH, doc, create=True) == _helpers.pbs_for_create(PATH, doc)


def test_new_ids_are_unique_and_plain() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and i.isalnum() for i in ids)


def test_max_writes_is_firestores_limit_at_most() -> None:
    with pytest.raises(ValueError, match="max_writes"):
        GroupCommit(None, timeout_sec=1, max_writes=MAX_WRITES_PER_COMMIT + 1)  # type: ignore[arg-type]


def with_client(project: str, body: Callable[[firestore.AsyncClient], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        client = firestore.AsyncClient(project=project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        try:
            return await body(client)
        finally:
            client.close()  # type: ignore[no-untyped-call]

    return asyncio.run(run())


async def ids_present(client: firestore.AsyncClient, ids: list[str]) -> set[str]:
    refs = [client.collection(COLLECTION).document(i) for i in ids]
    return {snap.id async for snap in client.get_all(refs) if snap.exists}


async def sent(commits: GroupCommit) -> None:
    """Until the queued writes are in a commit on the wire."""
    while commits.queued or not commits.in_flight:
        await asyncio.sleep(0)


def test_concurrent_writers_share_commits_and_every_write_lands(backends: Backends) -> None:
    async def body(client: firestore.AsyncClient) -> tuple[GroupCommit, set[str], list[str]]:
        commits = GroupCommit(client, timeout_sec=30)
        ids = [f"many-{k}" for k in range(300)]

        async def writer(doc_id: str) -> None:
            await asyncio.sleep(0.001 * (int(doc_id.split("-")[1]) % 7))  # staggered
            await commits.set(client.collection(COLLECTION).document(doc_id), {"id": doc_id})

        await asyncio.gather(*(writer(i) for i in ids))
        return commits, await ids_present(client, ids), ids

    commits, present, ids = with_client(backends.project, body)
    assert present == set(ids)
    assert commits.stats.writes == 300 and 1 <= commits.stats.commits < 300
    assert commits.stats.failed_commits == 0 and commits.stats.largest_commit > 1
    assert not commits.in_flight and commits.queued == 0


def test_a_group_over_the_limit_is_split(backends: Backends) -> None:
    async def body(client: firestore.AsyncClient) -> tuple[GroupCommit, set[str], list[str]]:
        commits = GroupCommit(client, timeout_sec=30, max_writes=4)
        ids = [f"split-{k}" for k in range(10)]
        refs = [client.collection(COLLECTION).document(i) for i in ids]
        await asyncio.gather(*(commits.set(r, {"n": 1}) for r in refs))  # one group of 10
        return commits, await ids_present(client, ids), ids

    commits, present, ids = with_client(backends.project, body)
    assert present == set(ids)
    assert commits.stats.commits == 3 and commits.stats.largest_commit == 4


def test_a_failed_commit_fails_only_its_own_writes(backends: Backends) -> None:
    async def body(client: firestore.AsyncClient) -> dict[str, Any]:
        commits = GroupCommit(client, timeout_sec=30)
        col = client.collection(COLLECTION)
        await col.document("dup").set({"first": True})
        first = asyncio.ensure_future(commits.set(col.document("fail-a"), {"n": 1}))
        await sent(commits)  # A's commit is in flight: what follows goes in the next one
        doomed = [commits.set(col.document(f"fail-b{k}"), {"n": k}) for k in range(5)]
        # a create of an existing document: the backend refuses the whole commit
        doomed.append(commits.create(col.document("dup"), {"second": True}))
        outcomes = await asyncio.gather(first, *doomed, return_exceptions=True)
        await commits.set(col.document("fail-c"), {"n": 2})  # the next commit is fine
        ids = ["fail-a", "fail-c", *(f"fail-b{k}" for k in range(5))]
        return {
            "outcomes": outcomes,
            "present": await ids_present(client, ids),
            "stats": commits.stats,
        }

    got = with_client(backends.project, body)
    first, *doomed = got["outcomes"]
    assert first is None
    assert all(isinstance(o, Exception) for o in doomed), doomed
    assert len({id(o) for o in doomed}) == 1  # the one commit's error, to each waiter
    assert got["present"] == {"fail-a", "fail-c"}
    assert got["stats"].commits == 3 and got["stats"].failed_commits == 1


def test_a_write_that_cannot_be_encoded_fails_alone(backends: Backends) -> None:
    async def body(client: firestore.AsyncClient) -> tuple[list[Any], set[str]]:
        commits = GroupCommit(client, timeout_sec=30)
        col = client.collection(COLLECTION)
        outcomes = await asyncio.gather(
            commits.set(col.document("enc-ok1"), {"n": 1}),
            commits.set(col.document("enc-bad"), {"n": object()}),
            commits.set(col.document("enc-ok2"), {"n": 2}),
            return_exceptions=True,
        )
        return list(outcomes), await ids_present(client, ["enc-ok1", "enc-bad", "enc-ok2"])

    outcomes, present = with_client(backends.project, body)
    assert outcomes[0] is None and outcomes[2] is None and isinstance(outcomes[1], TypeError)
    assert present == {"enc-ok1", "enc-ok2"}


def test_an_unreachable_backend_fails_the_commit_as_backend_down(
    backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nobody there

    async def body(client: firestore.AsyncClient) -> tuple[list[Any], GroupCommit]:
        commits = GroupCommit(client, timeout_sec=5)
        col = client.collection(COLLECTION)
        outcomes = await asyncio.gather(
            *(commits.set(col.document(f"down-{k}"), {"n": k}) for k in range(8)),
            return_exceptions=True,
        )
        return outcomes, commits

    outcomes, commits = with_client(backends.project, body)
    assert all(isinstance(o, BACKEND_DOWN) for o in outcomes), outcomes  # 503 + Retry-After
    assert commits.stats.failed_commits == commits.stats.commits == 1
    assert not commits.in_flight


def test_without_coalescing_each_write_is_its_own_commit(backends: Backends) -> None:
    async def body(client: firestore.AsyncClient) -> tuple[GroupCommit, set[str]]:
        commits = GroupCommit(client, timeout_sec=30, coalesce=False)
        ids = [f"alone-{k}" for k in range(20)]
        refs = [client.collection(COLLECTION).document(i) for i in ids]
        await asyncio.gather(*(commits.set(r, {"n": 1}) for r in refs))
        return commits, await ids_present(client, ids)

    commits, present = with_client(backends.project, body)
    assert len(present) == 20 and commits.stats.commits == commits.stats.writes == 20
