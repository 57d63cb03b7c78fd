"""Quoting reinforcement fine-tuning: what every provider's RFT quote shares.

RFT bills differently per provider (Azure and OpenAI per training hour, Bedrock per token, Fireworks free
under 16B), but the work is the same: each prompt is answered `samples_per_prompt` times per epoch, and each
answer is graded. A model judge is a model call per answer, billed by whoever serves the judge, apart from
training: it is estimated and shown apart, never folded into the training price.
"""

from __future__ import annotations

import math

from anytune.cost.billing import TokenCount
from anytune.cost.catalog import PriceCatalog, load_catalog
from anytune.cost.quotes import _availability, _priced, token_priced, unavailable
from anytune.graders.spec import as_one, grader_leaves
from anytune.hookspecs import Quote
from anytune.spec import JobSpec

DEFAULT_SAMPLES = 8  # answers per prompt when the job leaves it to the provider (anytune's assumption)
DEFAULT_ANSWER_TOKENS = 256  # tokens per sampled answer when max_completion_tokens is not set


def rft_samples(spec: JobSpec, epochs: float, *, provider_decides: bool = False) -> tuple[int, list[str]]:
    """Answers per prompt and epoch, and the note that says where the number comes from. `provider_decides`:
    the provider takes no such setting (OpenAI, Azure), so the job's is not what it will sample."""
    given = getattr(spec.method, "samples_per_prompt", None)
    if given and not provider_decides:
        return int(given), []
    return DEFAULT_SAMPLES, [f"answers per prompt left to the provider; quoted as {DEFAULT_SAMPLES}"]


def judge_note(spec: JobSpec, examples: int, epochs: float, samples: int) -> list[str]:
    """The model-judge calls the job will make, as a note apart from the training price (none without a
    judge)."""
    judges = [leaf for _, leaf in grader_leaves(as_one(spec.method.grader)) if leaf.type == "model_judge"]
    if not judges:
        return []
    calls = math.ceil(examples * epochs * samples) * len(judges)
    models = ", ".join(sorted({j.model for j in judges}))  # type: ignore[union-attr]
    return [
        f"model-judge calls, billed apart at {models}'s token price (not in this price): about {calls:,} "
        f"calls, one per sampled answer and judge"
    ]


def hourly_rft_quote(
    provider: str,
    spec: JobSpec,
    *,
    model: str,
    count: TokenCount,
    epochs: float,
    hours_per_1k_answers: float,
    tier: str | None = None,
    extra: list[str] | None = None,
    catalog: PriceCatalog | None = None,
    provider_decides_samples: bool = False,
) -> Quote:
    """An RFT quote priced per training hour: hours estimated from the answers the job samples."""
    catalog = catalog or load_catalog()
    samples, notes = rft_samples(spec, epochs, provider_decides=provider_decides_samples)
    answers = math.ceil(count.examples * epochs * samples)
    hours = max(0.1, answers / 1000 * hours_per_1k_answers)
    entry = catalog.price(provider, method="rft", model=model, tier=tier)
    assumptions = [
        f"billed per training hour: about {hours:.2f} h for {answers:,} sampled answers "
        f"({count.examples:,} prompts x {epochs:g} epoch(s) x {samples}), at anytune's assumed "
        f"{hours_per_1k_answers:g} h per 1,000 answers (the provider publishes no rate)",
        *notes,
        *judge_note(spec, count.examples, epochs, samples),
        *(extra or []),
    ]
    quote = Quote(
        provider=provider,
        model=model,
        unit="hour",
        hours=hours,
        eta_seconds=hours * 3600,
        assumptions=assumptions,
    )
    if entry is None or entry.unit != "hour":
        quote.assumptions.append(f"no {provider} RFT price per hour for {model} in the catalog")
        return quote
    closed = _availability(catalog, provider, entry)
    if closed:
        return unavailable(provider, closed, model=model)
    return _priced(quote, entry, catalog, hours * entry.price)


def token_rft_quote(
    provider: str,
    spec: JobSpec,
    *,
    model: str,
    count: TokenCount,
    epochs: float,
    params_b: float | None = None,
    assumptions: list[str] | None = None,
) -> Quote:
    """An RFT quote priced per token of the sampled work: the prompts' tokens x epochs x answers per prompt."""
    samples, notes = rft_samples(spec, epochs)
    return token_priced(
        provider,
        spec,
        model=model,
        count=count,
        multiplier=epochs * samples,
        rule=f"RFT: {count.tokens:,} prompt tokens x {epochs:g} epoch(s) x {samples} answers per prompt",
        params_b=params_b,
        assumptions=[*(assumptions or []), *notes],
    )
