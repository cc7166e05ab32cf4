"""The SDK options a ``pack391_*`` decorator takes, typed as the SDK types them.

``https_fn.on_call(**kwargs)`` and ``scheduler_fn.on_schedule(**kwargs)`` take the fields
of ``firebase_functions.options.HttpsOptions`` and ``ScheduleOptions`` as keywords (the
SDK copies the dataclasses' signatures onto them). Our decorators add their own keywords
(role, request model, rate limit, schedule), so they cannot copy a signature; these
TypedDicts mirror the SDK's fields instead, and ``**options: Unpack[...]`` lets mypy
reject a misspelt or mistyped option where it is written, not at ``firebase deploy``'s
discovery. ``tests/shared/test_edge_options.py`` checks that they stay field for field,
type for type, what the installed SDK declares.

One deliberate difference: the SDK's types also admit ``options.RESET_VALUE`` (of a class
only its ``private`` package names). Resetting is what the global options do
(:func:`shared.options.apply_global_options`); a single function never needs it, so these
types leave it out and the bundle never names the SDK's private class.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from firebase_functions.options import (
    CorsOptions,
    IngressSetting,
    MemoryOption,
    SupportedRegion,
    VpcEgressSetting,
)
from firebase_functions.params import Expression, SecretParam


class RuntimeOptionArgs(TypedDict, total=False):
    """``firebase_functions.options.RuntimeOptions``: what every function kind takes."""

    region: SupportedRegion | str | list[SupportedRegion | str] | None
    memory: int | MemoryOption | Expression[int] | None
    timeout_sec: int | Expression[int] | None
    min_instances: int | Expression[int] | None
    max_instances: int | Expression[int] | None
    concurrency: int | Expression[int] | None
    cpu: int | Literal["gcf_gen1"] | None
    vpc_connector: str | None
    vpc_connector_egress_settings: VpcEgressSetting | None
    service_account: str | None
    ingress: IngressSetting | None
    labels: dict[str, str] | None
    secrets: list[str] | list[SecretParam] | None
    enforce_app_check: bool | None
    preserve_external_changes: bool | None


class CallableOptions(RuntimeOptionArgs, total=False):
    """``firebase_functions.options.HttpsOptions``: what ``https_fn.on_call`` takes."""

    invoker: str | list[str] | Literal["public", "private"] | None
    cors: CorsOptions | None


class ScheduledOptions(RuntimeOptionArgs, total=False):
    """``firebase_functions.options.ScheduleOptions`` without ``schedule`` and
    ``timezone``, which :func:`shared.edge.scheduled_function` takes as its own keywords."""

    retry_count: int | Expression[int] | None
    max_retry_seconds: int | Expression[int] | None
    max_backoff_seconds: int | Expression[int] | None
    max_doublings: int | Expression[int] | None
    min_backoff_seconds: int | Expression[int] | None
