"""Service-level objectives: the objectives' overrides and each budget action's mode."""

from __future__ import annotations

from firebase_functions import params

SLO_OBJECTIVES = params.StringParam(
    "PACK391_SLO_OBJECTIVES",
    default="",
    label="SLO objectives",
    description=(
        "Objectives that differ from the defaults (99 % available, 95 % of requests within "
        "400 ms), separated by ';': SCOPE=AVAILABILITY_PCT/LATENCY_MS/LATENCY_GOOD_PCT, "
        "SCOPE one of platform, class:NAME, service:ID, callable:NAME "
        "(e.g. class:payment=99.9/800/95;service:api-gateway=99.5/400/95). docs/slo.md."
    ),
)

SLO_DEPLOY_FREEZE = params.StringParam(
    "PACK391_SLO_DEPLOY_FREEZE",
    default="enforce",
    label="SLO: deploy freeze",
    description=(
        "The pre-deploy gate's error-budget check: enforce (refuse a release while its "
        "service's or the platform's budget burns at the ticket rate), shadow (pass, say it "
        "would have refused), off."
    ),
)

SLO_ADMISSIONS_PAUSE = params.StringParam(
    "PACK391_SLO_ADMISSIONS_PAUSE",
    default="shadow",
    label="SLO: admissions pause",
    description=(
        "Soft-launch admissions while the platform's budget burns at the ticket rate: "
        "enforce (pause them), shadow (admit, count what would have been paused), off."
    ),
)

SLO_SHED = params.StringParam(
    "PACK391_SLO_SHED",
    default="shadow",
    label="SLO: shedding",
    description=(
        "During a page-level burn of the platform's budget: enforce (refuse the "
        "lowest-priority endpoint classes, ai first, payment and auth never by default), "
        "shadow (count what would have been refused), off."
    ),
)
