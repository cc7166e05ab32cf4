"""Test data shared by the scaling tests."""

from __future__ import annotations

from typing import Any

from shared.models.scaling import ServiceConfig


def service_config(**over: Any) -> ServiceConfig:
    """api-gateway with bounds 2..40 in us-central1, unless overridden."""
    base: dict[str, Any] = {
        "service_id": "api-gateway",
        "initial_instances": 3,
        "min_instances": 2,
        "max_instances": 40,
        "cloud_run_service": "api-gateway",
        "region": "us-central1",
    }
    return ServiceConfig(**{**base, **over})
