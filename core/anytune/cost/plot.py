"""The comparison as a picture: price and time per provider, side by side (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from anytune.errors import UsageError
from anytune.formatting import pyplot
from anytune.hookspecs import Quote


def plot_quotes(quotes: list[Quote], path: Path, *, title: str, budget: float | None = None) -> Path:
    """Two bar charts sharing the provider axis: price, and ETA in hours. Hatched bars rest on estimated
    token counts; a dashed line marks the budget, red bars are over it."""
    rows = [q for q in quotes if q.available and q.price is not None]
    if not rows:
        raise UsageError("no provider gave a price, so there is nothing to plot")
    plt = pyplot()
    labels = [q.label for q in rows]
    height = max(2.5, 0.45 * len(rows) + 1.2)
    fig, (ax_price, ax_eta) = plt.subplots(1, 2, figsize=(11, height), sharey=True)
    colors = ["#c44e52" if budget is not None and (q.price or 0.0) > budget else "#4c72b0" for q in rows]
    hatches = ["//" if q.tokens_estimated else "" for q in rows]
    positions = range(len(rows))
    bars = ax_price.barh(positions, [q.price or 0.0 for q in rows], color=colors)
    for bar, hatch in zip(bars, hatches, strict=True):
        bar.set_hatch(hatch)
    for bar, q in zip(bars, rows, strict=True):
        ax_price.annotate(
            f" {q.price:,.2f}" if (q.price or 0) >= 0.01 else f" {q.price:.4f}",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            va="center",
            fontsize=8,
        )
    ax_price.set_yticks(list(positions), labels)
    ax_price.invert_yaxis()
    ax_price.set_xlabel(f"price ({rows[0].currency})")
    if budget is not None:
        ax_price.axvline(budget, linestyle="--", color="#555555", linewidth=1)
        ax_price.annotate(" budget", (budget, len(rows) - 0.6), fontsize=8, color="#555555")
    longest = max((q.eta_seconds or 0.0) for q in rows)
    unit, scale = ("minutes", 60.0) if longest < 2 * 3600 else ("hours", 3600.0)
    etas = [(q.eta_seconds or 0.0) / scale for q in rows]
    ax_eta.barh(positions, etas, color="#55a868")
    ax_eta.set_xlabel(f"ETA ({unit})")
    for i, (value, q) in enumerate(zip(etas, rows, strict=True)):
        ax_eta.annotate(
            " -" if q.eta_seconds is None else f" {value:,.1f}", (value, i), va="center", fontsize=8
        )
    dates = sorted({q.price_date.isoformat() for q in rows if q.price_date})
    fig.suptitle(
        f"{title}: cost and time by provider" + (f" (prices seen {', '.join(dates)})" if dates else ""),
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
