"""Every private attribute of an SDK the tooling uses, in one place, each with its reason.

The deployed bundle (``functions/``, ``shared/``, ``main.py``) uses none:
``tests/test_sdk_public_api.py`` checks that, and that the local stack (``stack/``) and
the benchmarks (``bench/``) reach an SDK's private attribute only through this module.
Each helper below exists because the SDK has no public way to do what a local tool
needs; when an SDK upgrade breaks one, only this file changes. Never import it from the
bundle (the ``bundle-without-tooling`` import contract forbids it anyway).
"""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers as firestore_helpers
from google.cloud.firestore_v1.types import write as write_pb


def set_emulator_host(client: firestore.Client, host: str) -> None:
    """Point a client built with ``client_options={"api_endpoint": host}`` at the emulator
    at ``host`` as if ``FIRESTORE_EMULATOR_HOST`` had been set when it was built (an
    insecure channel, the emulator's auth header), without setting the variable for the
    whole process: the client reads only the environment, in its constructor."""
    client._emulator_host = host


def credentials_of(client: firestore.Client) -> Any:
    """The credentials a Firestore client was built with, to build its async twin with the
    same ones (anonymous against the emulator). The client exposes no accessor."""
    return client._credentials


def client_of(ref: firestore.DocumentReference) -> Any:
    """The client a document reference belongs to (a decoded reference field is bound to
    the client that read it). References expose no accessor."""
    return ref._client


def document_path(ref: Any) -> str:
    """The full resource name of a (sync or async) document reference,
    ``projects/P/databases/D/documents/...``: what a ``Write`` names. Its public ``path``
    is relative to the database."""
    path: str = ref._document_path
    return path


def add_writes(batch: Any, writes: list[write_pb.Write]) -> None:
    """Add prepared ``Write`` messages to a (sync or async) write batch: the batch's own
    ``set``/``create`` build them again from the document every time, which the group
    commit avoids for flat documents (``stack/group_commit.py``)."""
    batch._add_write_pbs(writes)


def writes_of_create(path: str, doc: dict[str, Any]) -> list[write_pb.Write]:
    """The ``Write`` messages the client builds for ``create(doc)`` at ``path``."""
    writes: list[write_pb.Write] = firestore_helpers.pbs_for_create(path, doc)
    return writes


def writes_of_set(path: str, doc: dict[str, Any]) -> list[write_pb.Write]:
    """The ``Write`` messages the client builds for ``set(doc)`` (no merge) at ``path``."""
    writes: list[write_pb.Write] = firestore_helpers.pbs_for_set_no_merge(path, doc)
    return writes


class InterceptedClient(firestore.Client):
    """A Firestore client whose emulator channel a subclass may wrap
    (:meth:`wrap_channel`), e.g. to count RPCs: the client builds its channel in a
    private method, with no public hook for interceptors."""

    def wrap_channel(self, channel: Any) -> Any:
        return channel

    def _emulator_channel(self, transport: Any) -> Any:
        channel = super()._emulator_channel(transport)  # type: ignore[no-untyped-call]
        return self.wrap_channel(channel)


def declared_params() -> dict[str, Any]:
    """Every param the imported modules declared, by name: the SDK's own registry, which
    it fills as ``params.*Param(...)`` run and exposes only to its manifest writer."""
    from firebase_functions import params

    registry: dict[str, Any] = params._params
    return registry
