"""The deploy guard's alerts, pure: what a deployment's phase change raises or resolves."""

from __future__ import annotations

from shared.alerts.policy import AlertChange, AlertResolve, AlertSpec
from shared.models.alerts import AlertSource, Severity
from shared.models.deploy import DeploymentDoc, Phase


def rollback_alert_key(environment: str, service: str) -> str:
    """One rollback alert per service and environment."""
    return f"deploy:rollback:{environment}:{service}"


def deployment_alerts(before: DeploymentDoc, after: DeploymentDoc) -> list[AlertChange]:
    """The alerts a phase change raises or resolves: a rollback raises one per service (it
    resolves when a human acknowledges it); a deployment that succeeds (the new revision
    serves 100 %) resolves the rollback alerts of its services in its environment."""
    if after.phase == before.phase:
        return []
    services = sorted({s.service for s in after.services})
    if after.phase == Phase.ROLLING_BACK:
        last = after.analyses[-1] if after.analyses else None
        return [
            AlertSpec(
                source=AlertSource.DEPLOY,
                kind="rollback",
                dedup_key=rollback_alert_key(after.environment, service),
                severity=Severity.HIGH,
                title=(
                    f"Deployment {after.deployment_id} ({after.version}) of {service} rolled "
                    f"back in {after.environment}: {after.reason}"
                ),
                evidence={
                    "deploymentId": after.deployment_id,
                    "version": after.version,
                    "environment": after.environment,
                    "service": service,
                    "reason": after.reason,
                    "step": after.step,
                    "analysis": last.model_dump(mode="json", by_alias=True) if last else None,
                },
                resolve_on_acknowledge=True,
            )
            for service in services
        ]
    if after.phase == Phase.SUCCEEDED:
        return [
            AlertResolve(
                rollback_alert_key(after.environment, service),
                f"deployment {after.deployment_id} ({after.version}) succeeded",
            )
            for service in services
        ]
    return []
