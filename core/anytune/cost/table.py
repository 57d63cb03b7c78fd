"""One job's quotes side by side: a table sorted by price, unavailable providers last with their reasons,
as rows, JSON, CSV, a rich table or a plot. Built by `anytune.workflows.compare.quote_providers`."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anytune.formatting import duration, money
from anytune.hookspecs import Quote
from anytune.spec import JobSpec


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
                    "recurring": [r.model_dump(mode="json") for r in q.recurring],
                }
            )
        return out

    @classmethod
    def from_json(cls, spec: JobSpec, data: dict[str, Any]) -> QuoteTable:
        """The table `to_json` wrote (a server's quote, read back by a remote client)."""
        fields = set(Quote.model_fields)
        quotes = [
            Quote.model_validate({k: v for k, v in row.items() if k in fields}) for row in data["quotes"]
        ]
        return cls(spec, quotes, float(data.get("seconds") or 0.0), list(data.get("warnings") or []))

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
        """The comparison for a terminal, fitting 80 columns: a table (cheapest in bold green, over budget in
        red, the price date in the caption when every price was seen the same day, models by their short
        name), then one line per provider that says more: why it cannot run the job, what the result costs
        to keep (hosting per hour, apart from the one-off price), what a missing price rests on."""
        from collections import Counter

        from rich.console import Group
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        dates = Counter(q.price_date for q in self.quotes if q.available and q.price_date)
        usual = dates.most_common(1)[0][0] if dates else None
        others = sorted(
            {f"{q.provider} {q.price_date}" for q in self.quotes if q.price_date not in (None, usual)}
        )
        budget = f", budget {self.budget:,.2f} USD" if self.budget is not None else ""
        t = Table(title=f"quote for {escape(self.spec.name)}{budget}", title_justify="left")
        columns = ["provider", "model", "tokens", "price", "ETA"]
        for col in columns:
            t.add_column(
                col,
                justify="right" if col in ("tokens", "price", "ETA") else "left",
                no_wrap=True,
                max_width=20 if col == "model" else None,
                min_width={"tokens": 7, "price": 10, "ETA": 6}.get(col),
                overflow="ellipsis",
            )
        seen = f"prices seen {usual}" + (f" ({', '.join(others)})" if others else "") if usual else ""
        lines: list[str] = [f"[dim]{escape(seen)}[/]"] if seen else []
        cheapest = self.cheapest()
        for q in self.quotes:
            model = escape((q.model or "-").rsplit("/", 1)[-1])
            if not q.available:
                row = [escape(q.label), model, "-", "[red]refused[/]", "-"]
            else:
                tokens = (
                    "-"
                    if q.billable_tokens is None
                    else f"{'~' if q.tokens_estimated else ''}{q.billable_tokens:,}"
                )
                price = money(q.price, q.currency)
                if self.over_budget(q):
                    price = f"[red]{price}[/]"
                elif q is cheapest:
                    price = f"[bold green]{price}[/]"
                row = [escape(q.label), model, tokens, price, duration(q.eta_seconds)]
            t.add_row(*row)
            note = self._note(q)
            if note:
                lines.append(f"[bold]{escape(q.label)}[/]: {note}")
            for r in q.recurring:  # what the result costs to keep, apart from the one-off training price
                lines.append(
                    f"[bold]{escape(q.label)}[/]: then {money(r.price, r.currency)} per {r.unit} ({escape(r.what)})"
                )
        return Group(t, *(Text.from_markup(line) for line in lines))

    def _note(self, q: Quote) -> str:
        from rich.markup import escape

        if not q.available:
            return f"[red]{escape(q.reason or 'not available')}[/]"
        if self.over_budget(q):
            return "[red]over budget[/]"
        if q.price is None:
            return f"[yellow]{escape(q.assumptions[-1]) if q.assumptions else 'no catalog price'}[/]"
        return ""

    def plot(self, path: str | Path) -> Path:
        """A PNG with price and ETA per provider (the priced ones)."""
        from anytune.cost.plot import plot_quotes

        return plot_quotes(self.quotes, Path(path), title=self.spec.name, budget=self.budget)


def _order(q: Quote) -> tuple[int, float, str]:
    if not q.available:
        return (2, 0.0, q.label)
    if q.price is None:
        return (1, 0.0, q.label)
    return (0, q.price, q.label)
