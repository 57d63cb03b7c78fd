"""Stage 3, quote: the backend prices what it prepared, and the budget is applied. A refusal here (data the
provider would refuse, a job it cannot run, a quote over `budget_usd`) still leaves nothing behind; a quote
for a comparison shows it in its row instead of raising."""

from __future__ import annotations

from anytune.api import Preflight
from anytune.cost.quotes import unavailable
from anytune.errors import BudgetExceededError, CapabilityError
from anytune.hookspecs import PreparedData, Quote
from anytune.pipeline.checks import Checked
from anytune.pipeline.prepare import data_refusal


def quote(checked: Checked, prepared: PreparedData) -> Preflight:
    spec, backend = checked.spec, checked.backend
    warnings = checked.warnings + [str(x) for x in prepared.problems if not x.is_error]

    def done(q: Quote) -> Preflight:
        return Preflight(spec, backend, checked.capabilities, prepared, q, checked.reports, warnings)

    if prepared.errors:
        refusal = data_refusal(spec.provider, prepared.errors)
        if not checked.quote_only:
            raise refusal
        q = unavailable(spec.provider, refusal.message, model=spec.model_for(spec.provider))
        q.problems = list(refusal.details)
        return done(q)
    q = backend.quote(spec, prepared)
    if checked.quote_only:
        return done(q)
    if not q.available:
        raise CapabilityError(f"{spec.provider} cannot run this job: {q.reason or 'not available'}")
    if spec.budget_usd is not None and q.price is not None and q.price > spec.budget_usd:
        raise BudgetExceededError(
            f"the quote on {spec.provider} is {q.price:.2f} {q.currency}, above budget_usd "
            f"{spec.budget_usd:.2f}; nothing was uploaded or started",
            hint="raise budget_usd, use less data or fewer epochs, or choose another provider",
        )
    return done(q)
