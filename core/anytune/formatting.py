"""How anytune writes values for people: one rule per kind of value, used by the CLI, tables and reports.

A loss is not a percentage, a price of a fraction of a cent still shows its digits, and a duration reads
as minutes and seconds, wherever it appears."""

from __future__ import annotations

# metrics measured as a loss (lower is better, any scale); every other metric is a share in [0, 1]
LOSS_METRICS = ("eval_loss", "perplexity")


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


def is_fraction(name: str) -> bool:
    """Whether a metric is a share in [0, 1] (shown as a percentage) rather than a loss."""
    return name not in LOSS_METRICS


def metric(name: str, value: float, signed: bool = False) -> str:
    """An evaluation metric: shares (accuracy, exact match...) as percentages, losses and perplexity as
    numbers."""
    if is_fraction(name):
        return f"{value:+.1%}" if signed else f"{value:.1%}"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def pyplot():  # type: ignore[no-untyped-def]
    """matplotlib's pyplot, headless (every plot anytune draws is a file), or a clear error without it."""
    try:
        import matplotlib
    except ImportError:
        from anytune.errors import UsageError

        raise UsageError("plots need matplotlib", hint="pip install 'anytune[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def share(value: float | None) -> str:
    """A share of a whole (progress, a win rate), as a whole percentage."""
    return "-" if value is None else f"{value:.0%}"


__all__ = ["LOSS_METRICS", "duration", "is_fraction", "metric", "money", "pyplot", "share"]
