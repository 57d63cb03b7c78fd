"""One job, every provider: quotes side by side, sorted by price, as a table, JSON, CSV or a plot.

    import anytune
    table = anytune.quote(anytune.load_job_file("job.yaml"), providers="all", hardware="all")
    print(table.cheapest().label, table.cheapest().price)

Each row is the provider's own `quote()` after the same checks `anytune run` makes (capabilities, the
provider's rules, the data), so a provider that cannot run the job says why instead of giving a number.
Nothing is recorded, uploaded or started.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anytune.cost.catalog import extra_prices, load_catalog
from anytune.cost.quotes import unavailable
from anytune.errors import AnytuneError, UsageError
from anytune.hookspecs import Quote
from anytune.spec import JobSpec

if TYPE_CHECKING:
    from anytune.client import Client

LOCAL = "local"


@dataclass(frozen=True)
class Target:
    """One row to quote: a provider, and for hour-priced work the hardware."""

    provider: str
    hardware: str | None = None
    backend: str | None = None  # the backend that computes it, where it is not the provider's own


@dataclass
class QuoteTable:
    """Quotes for one job, cheapest first; unavailable providers last, with their reasons."""

    spec: JobSpec
    quotes: list[Quote]
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.quotes.sort(key=_order)

    @property
    def budget(self) -> float | None:
        return self.spec.budget_usd

    def over_budget(self, q: Quote) -> bool:
        return self.budget is not None and q.price is not None and q.price > self.budget

    def refusals(self) -> dict[str, list[str]]:
        """Each provider that would refuse the job's data, with its problems (file:line each)."""
        return {q.label: q.problems for q in self.quotes if q.problems}

    def cheapest(self) -> Quote | None:
        priced = [q for q in self.quotes if q.available and q.price is not None and not self.over_budget(q)]
        return priced[0] if priced else None

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows for JSON and CSV (one per quote, the same keys each)."""
        out = []
        for q in self.quotes:
            out.append(
                {
                    "provider": q.provider,
                    "hardware": q.hardware,
                    "model": q.model,
                    "available": q.available,
                    "reason": q.reason,
                    "billable_tokens": q.billable_tokens,
                    "tokens_estimated": q.tokens_estimated,
                    "token_counter": q.token_counter,
                    "price": q.price,
                    "currency": q.currency,
                    "unit_price": q.unit_price,
                    "unit": q.unit,
                    "hours": q.hours,
                    "eta_seconds": round(q.eta_seconds, 1) if q.eta_seconds is not None else None,
                    "over_budget": self.over_budget(q),
                    "price_source": q.price_source,
                    "price_date": q.price_date.isoformat() if q.price_date else None,
                    "assumptions": q.assumptions,
                    "problems": q.problems,
                }
            )
        return out

    def to_json(self) -> str:
        return json.dumps(
            {
                "job": self.spec.name,
                "budget_usd": self.budget,
                "seconds": round(self.seconds, 3),
                "quotes": self.rows(),
                "warnings": self.warnings,
            },
            indent=2,
        )

    def to_csv(self) -> str:
        buf = io.StringIO()
        rows = self.rows()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["provider"], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "assumptions": " | ".join(row["assumptions"]),
                    "problems": " | ".join(row["problems"]),
                }
            )
        return buf.getvalue()

    def rich_table(self) -> Any:
        """The comparison as a rich Table: cheapest in bold green, over-budget in red, reasons in red."""
        from rich.markup import escape
        from rich.table import Table

        from anytune.cli.console import duration, money

        budget = f", budget {self.budget:,.2f} USD" if self.budget is not None else ""
        t = Table(title=f"quote for {escape(self.spec.name)}{budget}", title_justify="left")
        columns = ("provider", "model", "tokens", "price", "ETA", "price seen", "note")
        for col in columns:
            t.add_column(
                col,
                justify="right" if col in ("tokens", "price", "ETA") else "left",
                no_wrap=col in ("tokens", "price", "ETA", "price seen"),
                max_width=34 if col == "model" else None,
                overflow="ellipsis" if col == "model" else "fold",
            )
        cheapest = self.cheapest()
        for q in self.quotes:
            if not q.available:
                reason = f"[red]{escape(q.reason or '')}[/]"
                t.add_row(escape(q.label), escape(q.model or "-"), "-", "-", "-", "-", reason)
                continue
            tokens = (
                "-"
                if q.billable_tokens is None
                else f"{'~' if q.tokens_estimated else ''}{q.billable_tokens:,}"
            )
            price, note = money(q.price, q.currency), ""
            if self.over_budget(q):
                price, note = f"[red]{price}[/]", "[red]over budget[/]"
            elif q.price is None:
                note = f"[yellow]{escape(q.assumptions[-1]) if q.assumptions else 'no catalog price'}[/]"
            elif q is cheapest:
                price = f"[bold green]{price}[/]"
            seen = q.price_date.isoformat() if q.price_date else "-"
            t.add_row(
                escape(q.label), escape(q.model or "-"), tokens, price, duration(q.eta_seconds), seen, note
            )
        return t

    def plot(self, path: str | Path) -> Path:
        """A PNG with price and ETA per provider (the priced ones)."""
        from anytune.cost.plot import plot_quotes

        return plot_quotes(self, Path(path))


def _order(q: Quote) -> tuple[int, float, str]:
    if not q.available:
        return (2, 0.0, q.label)
    if q.price is None:
        return (1, 0.0, q.label)
    return (0, q.price, q.label)


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def targets(
    installed: Iterable[str],
    providers: str | Sequence[str] = "all",
    hardware: str | Sequence[str] | None = None,
) -> list[Target]:
    """What to quote. Token-priced providers get one row; hour-priced ones one row per hardware: the
    machine's own for `local` by default, the cheapest that fits for a rental service, or every one
    (`hardware="all"`) or the ones named. Rental services without a backend of their own (HF Jobs) are
    quoted through the local backend: the same training, on their machines, at their prices."""
    catalog = load_catalog()
    installed = list(installed)
    wanted = _names(providers) or ["all"]
    if "all" in wanted:
        wanted = [
            *installed,
            *(p for p, info in catalog.providers.items() if not info.backend and p not in installed),
        ]
    hw = _names(hardware)
    out: list[Target] = []
    for name in wanted:
        info = catalog.providers.get(name)
        hourly = info is not None and info.billing == "hours"
        if name not in installed and not (info is not None and not info.backend):
            raise UsageError(
                f"no backend or catalog entry named {name!r}",
                hint=f"installed backends: {', '.join(installed) or 'none'}; "
                f"quote-only providers: {', '.join(p for p, i in catalog.providers.items() if not i.backend)}",
            )
        if not hourly:
            out.append(Target(name))
            continue
        backend = name if name in installed else LOCAL
        if hw is None:
            out.append(Target(name, None, backend))
        else:
            names = catalog.hardware_for(name) if "all" in hw else hw
            out.extend(Target(name, h, backend) for h in names)
    return out


def quote(
    spec: JobSpec,
    providers: str | Sequence[str] = "all",
    *,
    hardware: str | Sequence[str] | None = None,
    prices: Iterable[str | Path] = (),
    client: Client | None = None,
) -> QuoteTable:
    """Quote `spec` on every provider named (or all), without recording, uploading or starting anything."""
    from anytune.client import Client

    client = client or Client()
    started = time.perf_counter()
    with extra_prices(prices):
        quoter = _Quoter(client, spec)
        quotes = []
        for target in targets(client.plugins.backend_names(), providers, hardware):
            if target.backend is not None and target.hardware is None and target.provider != LOCAL:
                quotes.append(quoter.cheapest(target))
            else:
                quotes.append(quoter.one(target))
    return QuoteTable(spec, quotes, time.perf_counter() - started, sorted(quoter.warnings))


class _Quoter:
    """Runs each backend's checks once (spec, capabilities, data), then asks it for every row it prices."""

    def __init__(self, client: Client, spec: JobSpec) -> None:
        self.client = client
        self.spec = spec
        self.warnings: set[str] = set()
        self._preflights: dict[str, Any] = {}

    def _preflight(self, backend: str) -> Any:
        if backend not in self._preflights:
            try:
                pre = self.client.preflight(
                    self.spec.model_copy(update={"provider": backend}), quote_only=True
                )
                self.warnings.update(f"{backend}: {w}" for w in pre.warnings)
                self._preflights[backend] = pre
            except AnytuneError as exc:
                self._preflights[backend] = exc
        return self._preflights[backend]

    def one(self, target: Target) -> Quote:
        backend = target.backend or target.provider
        model = self.spec.model_for(backend)
        if backend not in self.client.plugins.backend_names():
            return unavailable(
                target.provider,
                f"needs the {backend} backend to count tokens (pip install 'anytune[{backend}]')",
                hardware=target.hardware,
            )
        pre = self._preflight(backend)
        try:
            if isinstance(pre, AnytuneError):
                raise pre
            if (target.provider == backend and target.hardware is None) or pre.prepared.errors:
                q = pre.quote
            else:
                q = pre.backend.quote(_spec_for(self.spec, target), pre.prepared)
        except AnytuneError as exc:
            reason = "; ".join(exc.details[:3]) if exc.details else exc.message
            return unavailable(target.provider, reason, model=model, hardware=target.hardware)
        return q if q.provider == target.provider else q.model_copy(update={"provider": target.provider})

    def cheapest(self, target: Target) -> Quote:
        """A rental service without a hardware choice: the cheapest of its machines that fits the job."""
        machines = load_catalog().hardware_for(target.provider)
        options = [self.one(Target(target.provider, h, target.backend)) for h in machines]
        priced = sorted(
            (q for q in options if q.available and q.price is not None), key=lambda q: q.price or 0.0
        )
        if priced:
            best = priced[0]
            best.assumptions.append(
                f"the cheapest of {len(options)} {target.provider} machines that fit; --hardware all lists every one"
            )
            return best
        reasons = sorted({q.reason for q in options if q.reason})
        return unavailable(
            target.provider,
            "; ".join(reasons[:2]) or "no machine fits",
            model=self.spec.model_for(target.provider),
        )


def _spec_for(spec: JobSpec, target: Target) -> JobSpec:
    backend = target.backend or target.provider
    update: dict[str, Any] = {"provider": backend}
    if target.hardware is not None or target.provider != backend:
        where = target.hardware or ""
        if target.provider != backend:
            where = f"{target.provider}:{where}"
        options = {**spec.provider_options}
        options[backend] = {**options.get(backend, {}), "hardware": where}
        update["provider_options"] = options
    return spec.model_copy(update=update)
