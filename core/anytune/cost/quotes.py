"""Building quotes from the catalog: the helpers every backend's `quote()` uses, so that token-priced and
hour-priced quotes read the same catalog, state their sources and dates, and mark estimates the same way."""

from __future__ import annotations

import math
import re

from anytune.cost.billing import TokenCount
from anytune.cost.catalog import PriceCatalog, PriceEntry, load_catalog
from anytune.cost.throughput import Throughput, fits, measured_tokens_per_s, modelled_tokens_per_s
from anytune.hookspecs import Quote
from anytune.jobs import RecurringCost
from anytune.settings import today
from anytune.spec import JobSpec

STARTUP_S = 60.0  # starting the machine or process and loading the model: billed, but no training
_SIZE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


def params_from_name(name: str) -> float | None:
    """Billions of parameters read from a model name (Llama-3.1-8B -> 8, SmolLM2-135M -> 0.135)."""
    found = [(float(n), unit.lower()) for n, unit in _SIZE.findall(name.rsplit("/", 1)[-1].replace("-", " "))]
    for n, unit in found:
        return n if unit == "b" else n / 1000
    return None


def unavailable(
    provider: str, reason: str, *, model: str | None = None, hardware: str | None = None
) -> Quote:
    return Quote(provider=provider, model=model, hardware=hardware, available=False, reason=reason)


def _priced(quote: Quote, entry: PriceEntry, catalog: PriceCatalog, price: float) -> Quote:
    """`quote` with its price and where that price comes from (the entry, its file, source and date)."""
    source, seen = catalog.source_of(entry)
    return quote.model_copy(
        update={
            "price": price,
            "currency": entry.currency,
            "unit_price": entry.price,
            "price_source": source + (f" [{entry.origin}]" if entry.origin != "built-in" else ""),
            "price_date": seen,
            "assumptions": quote.assumptions + ([entry.notes] if entry.notes else []),
        }
    )


def _availability(catalog: PriceCatalog, provider: str, entry: PriceEntry | None) -> str | None:
    """Why the provider or this priced model takes no new jobs today; None if it does."""
    now = today()
    info = catalog.providers.get(provider)
    if info and info.new_jobs_end and now > info.new_jobs_end:
        return f"{provider} accepts no new fine-tuning jobs since {info.new_jobs_end} ({info.new_jobs_end_source})"
    if entry and entry.retires and now >= entry.retires:
        return f"{entry.model} was retired on {entry.retires} ({catalog.retires_source(provider)})"
    return None


def eta_seconds(
    catalog: PriceCatalog, provider: str, tokens: int, *, model: str, params_b: float | None, adapter: str
) -> tuple[float | None, str | None]:
    """(seconds, basis) for a token-priced provider: a measured rate here, else the catalog's assumption."""
    measured = measured_tokens_per_s(provider, "remote", model, adapter)
    if measured:
        return tokens / measured.tokens_per_s, f"ETA from {measured.basis}"
    info = catalog.providers.get(provider)
    eta = info.eta if info else None
    if eta is None:
        return None, None
    rate: Throughput | None = None
    if eta.tokens_per_s:
        rate = Throughput(eta.tokens_per_s, f"{eta.tokens_per_s:g} tokens/s")
    elif eta.hardware and params_b and eta.hardware in catalog.hardware:
        rate = modelled_tokens_per_s(catalog.hardware[eta.hardware], params_b, adapter)
    if rate is None or rate.tokens_per_s <= 0:
        return None, None
    return (
        eta.overhead_s + tokens / rate.tokens_per_s,
        f"ETA: {eta.overhead_s / 60:g} min overhead + tokens at {rate.basis} ({eta.source})",
    )


def token_priced(
    provider: str,
    spec: JobSpec,
    *,
    model: str,
    count: TokenCount,
    multiplier: float,
    rule: str,
    params_b: float | None = None,
    catalog: PriceCatalog | None = None,
    assumptions: list[str] | None = None,
    tier: str | None = None,
) -> Quote:
    """A quote priced per 1M billable tokens: `count.tokens x multiplier` (epochs, evaluations) tokens, at
    the price of the service `tier` where the provider prices by tier."""
    catalog = catalog or load_catalog()
    adapter = spec.adapter.type
    entry = catalog.price(
        provider, method=spec.method_type.value, adapter=adapter, model=model, params_b=params_b, tier=tier
    )
    tokens = math.ceil(count.tokens * multiplier)
    notes = [rule, *(assumptions or []), *count.notes]
    if not count.exact:
        notes.append(f"token count is an estimate ({count.counter}); no tokenizer for {model} offline")
    eta, eta_basis = eta_seconds(catalog, provider, tokens, model=model, params_b=params_b, adapter=adapter)
    if eta_basis:
        notes.append(eta_basis)
    quote = Quote(
        provider=provider,
        model=model,
        billable_tokens=tokens,
        tokens_estimated=not count.exact,
        token_counter=count.counter,
        unit="1m_tokens",
        eta_seconds=eta,
        assumptions=notes,
    )
    if entry is None or entry.unit != "1m_tokens":
        size = f" ({params_b:g}B)" if params_b else ""
        quote.assumptions.append(
            f"no {provider} price for {model}{size}, {spec.method_type.value}, {adapter} in the catalog "
            f"({', '.join(catalog.files)}); add one in a prices override file"
        )
        return quote
    closed = _availability(catalog, provider, entry)
    if closed:
        return unavailable(provider, closed, model=model)
    return _priced(quote, entry, catalog, tokens * entry.price / 1e6)


def hour_priced(
    provider: str,
    spec: JobSpec,
    *,
    model: str,
    hardware: str,
    count: TokenCount,
    multiplier: float,
    params_b: float | None,
    catalog: PriceCatalog | None = None,
    measured_as: str | None = None,
    assumptions: list[str] | None = None,
    strict: bool = True,
) -> Quote:
    """A quote priced per hour of `hardware`: hours from a measured rate or the throughput model.

    `measured_as` is the provider name measurements were recorded under (the local backend records its own
    runs; renting the same hardware elsewhere runs at the same speed). `strict=False` (the machine a job
    runs on, not one being compared) turns "does not fit" and "size unknown" from a refusal into an
    unpriced quote that says so: they are estimates, and the run itself is the judge."""
    catalog = catalog or load_catalog()
    adapter = spec.adapter.type
    hw = catalog.hardware.get(hardware)
    problem = None
    if hw is None:
        problem = f"unknown hardware {hardware!r}; the catalog knows {', '.join(sorted(catalog.hardware))}"
    elif params_b is None:
        problem = (
            f"the size of {model} is unknown, so its training time cannot be estimated; "
            f"set provider_options.{provider}.params_b"
        )
    else:
        hp = spec.hyperparameters
        problem = fits(hw, params_b, adapter, batch=hp.batch_size, seq_len=hp.max_seq_length)
    if problem and strict:
        return unavailable(provider, problem, model=model, hardware=hardware)
    if problem or hw is None or params_b is None:
        return Quote(
            provider=provider,
            model=model,
            hardware=hardware,
            billable_tokens=math.ceil(count.tokens * multiplier),
            tokens_estimated=not count.exact,
            token_counter=count.counter,
            unit="hour",
            assumptions=[*(assumptions or []), *count.notes, f"not priced: {problem}"],
        )
    tokens = math.ceil(count.tokens * multiplier)
    rate = measured_tokens_per_s(measured_as or provider, hardware, model, adapter)
    rate = rate or modelled_tokens_per_s(hw, params_b, adapter)
    seconds = STARTUP_S + tokens / rate.tokens_per_s if rate.tokens_per_s > 0 else None
    notes = [
        f"training time from {rate.basis} for {params_b:g}B parameters ({adapter}), "
        f"plus {STARTUP_S:g} s to start and load the model",
        *(assumptions or []),
        *count.notes,
    ]
    if not count.exact:
        notes.append(f"token count is an estimate ({count.counter}); no tokenizer for {model} offline")
    entry = catalog.price(provider, method=spec.method_type.value, adapter=adapter, hardware=hardware)
    quote = Quote(
        provider=provider,
        model=model,
        hardware=hardware,
        billable_tokens=tokens,
        tokens_estimated=not count.exact,
        token_counter=count.counter,
        unit="hour",
        hours=round(seconds / 3600, 4) if seconds is not None else None,
        eta_seconds=seconds,
        assumptions=notes,
    )
    if entry is None or seconds is None:
        quote.assumptions.append(
            f"no hourly {provider} price for {hardware} in the catalog; add one in a prices override file"
        )
        return quote
    billed_hours = math.ceil(seconds / 60) / 60  # billed per started minute
    quote.assumptions.append(f"billed per started minute: {billed_hours * 60:.0f} min")
    return _priced(quote, entry, catalog, round(billed_hours * entry.price, 4))


def recurring_cost(
    provider: str, what: str, *, model: str, tier: str, unit: str = "hour"
) -> RecurringCost | None:
    """A cost that runs after training (hosting a deployment per hour...), from the catalog entry of `tier`."""
    catalog = load_catalog()
    entry = catalog.price(provider, model=model, tier=tier)
    if entry is None or entry.unit != unit:
        return None
    source, seen = catalog.source_of(entry)
    return RecurringCost(
        what=what,
        price=entry.price,
        unit=unit,
        currency=entry.currency,
        source=source,
        seen=seen,  # type: ignore[arg-type]
    )


def token_cost(
    provider: str,
    tokens: int | None,
    *,
    model: str,
    method: str | None = None,
    adapter: str | None = None,
    params_b: float | None = None,
    catalog: PriceCatalog | None = None,
    tier: str | None = None,
) -> float | None:
    """What `tokens` trained tokens cost at the catalog price: the actual cost of a finished job, computed
    the same way as its quote so that the two can be compared."""
    if tokens is None:
        return None
    entry = (catalog or load_catalog()).price(
        provider, method=method, adapter=adapter, model=model, params_b=params_b, tier=tier
    )
    if entry is None or entry.unit != "1m_tokens":
        return None
    return tokens * entry.price / 1e6
