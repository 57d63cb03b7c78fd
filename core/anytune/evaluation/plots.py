"""The report's pictures (matplotlib, headless): loss curves, scores with intervals, cost against quality."""

from __future__ import annotations

from pathlib import Path

from anytune.formatting import pyplot

PALETTE = ["#8c8c8c", "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def loss_curves(
    curves: dict[str, tuple[list[tuple[float, float]], list[tuple[float, float]]]],
    path: Path,
    ylabel: str = "loss",
) -> Path:
    """Training (and validation) curves per model: the loss, or an RFT run's mean reward."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (label, (train, evals)) in enumerate(curves.items()):
        color = PALETTE[(i + 1) % len(PALETTE)]
        if train:
            ax.plot([s for s, _ in train], [v for _, v in train], color=color, label=f"{label} (train)")
        if evals:
            ax.plot(
                [s for s, _ in evals],
                [v for _, v in evals],
                "o--",
                color=color,
                label=f"{label} (validation)",
            )
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_bars(
    subjects: list[tuple[str, dict[str, float], dict[str, tuple[float, float]]]],
    metrics: list[str],
    path: Path,
) -> Path:
    """Grouped bars: one group per metric, one bar per subject, 95% intervals as error bars."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(metrics) * max(1, len(subjects)) / 2 + 3), 4))
    width = 0.8 / max(1, len(subjects))
    for i, (label, values, ci) in enumerate(subjects):
        xs = [m + (i - (len(subjects) - 1) / 2) * width for m in range(len(metrics))]
        ys = [values.get(m, 0.0) for m in metrics]
        lows = [max(0.0, y - ci.get(m, (y, y))[0]) for m, y in zip(metrics, ys, strict=True)]
        highs = [max(0.0, ci.get(m, (y, y))[1] - y) for m, y in zip(metrics, ys, strict=True)]
        ax.bar(xs, ys, width, yerr=[lows, highs], capsize=4, label=label, color=PALETTE[i % len(PALETTE)])
        for x, y, up in zip(xs, ys, highs, strict=True):
            ax.annotate(
                f"{y:.0%}",
                (x, y + up),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 3),
                textcoords="offset points",
            )
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score (95% interval)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cost_quality(
    points: list[tuple[str, float, str, float | None, tuple[float, float] | None]], metric: str, path: Path
) -> Path:
    """One point per model: what it cost (actual, or quoted where no actual is known) against its score."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (label, cost, kind, value, ci) in enumerate(points):
        if value is None:
            continue
        low, high = ci or (value, value)
        ax.errorbar(
            [cost],
            [value],
            yerr=[[value - low], [high - value]],
            fmt="o",
            capsize=4,
            color=PALETTE[i % len(PALETTE)],
            label=f"{label} ({kind})",
        )
        ax.annotate(f" {label}", (cost, value), fontsize=8)
    ax.set_xlabel("training cost (USD)")
    ax.set_xlim(left=0, right=max(p[1] for p in points) * 1.25 or 1.0)
    ax.set_ylabel(f"{metric} (95% interval)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
