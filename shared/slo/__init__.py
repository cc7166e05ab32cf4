"""Service-level objectives shared by every area: the SLI recorder the edges feed
(:mod:`shared.slo.recorder`) and the actions snapshot the hot paths read
(:mod:`shared.slo.actions`). The evaluator that turns minutes into budgets, alerts and
actions is :mod:`functions.slo`."""
