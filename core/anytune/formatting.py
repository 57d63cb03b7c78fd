"""How anytune writes values for people: one rule per kind of value, used by the CLI, tables and reports.

A loss is not a percentage, a price of a fraction of a cent still shows its digits, and a duration reads
as minutes and seconds, wherever it appears."""

from __future__ import annotations

from anytune.evaluation.metrics import show as _metric


def money(value: float | None, currency: str = "USD") -> str:
    """Cents for everyday sums, four decimals for the fractions of a cent small jobs cost."""
    if value is None:
        return "-"
    return f"{value:,.2f} {currency}" if abs(value) >= 0.01 or value == 0 else f"{value:.4f} {currency}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m"


def metric(name: str, value: float, signed: bool = False) -> str:
    """An evaluation metric: shares (accuracy, exact match...) as percentages, losses and perplexity as
    numbers."""
    return _metric(name, value, signed)


def share(value: float | None) -> str:
    """A share of a whole (progress, a win rate), as a whole percentage."""
    return "-" if value is None else f"{value:.0%}"


__all__ = ["duration", "metric", "money", "share"]
