"""Reports: one HTML page and one Markdown file, with PNG plots, about one model or several side by side.

What people want to see instead of a log: did the loss fall, is the fine-tune better than its base model and by
how much (with intervals, not bare means), what did each provider charge for that quality, and on which
examples the models differ. Everything comes from the registry; nothing is recomputed except the plots.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anytune.api import ReportFiles
from anytune.errors import UsageError
from anytune.formatting import is_fraction
from anytune.formatting import metric as show
from anytune.settings import anytune_home

if TYPE_CHECKING:
    from anytune.api import ClientAPI, EvalTarget
    from anytune.registry.records import EvaluationRecord

MAX_EXAMPLES = 50


@dataclass
class Subject:
    label: str
    evaluation: EvaluationRecord
    target: EvalTarget | None = None  # None for the base model

    @property
    def cost(self) -> tuple[float | None, str]:
        if self.target is None:
            return 0.0, "no training"
        job = self.target.job
        if job is None or job.cost is None:
            return None, ""
        if job.cost.actual is not None:
            return job.cost.actual, "actual"
        return job.cost.quoted, "quoted"


def _rows_for(client: ClientAPI, t: EvalTarget) -> list[EvaluationRecord]:
    rows = client.evaluations(model_name=t.model.name, model_version=t.model.version) if t.model else []
    if not rows and t.job is not None:
        rows = [r for r in client.evaluations(job_id=t.job.id) if r.subject == "fine-tuned"]
    return [r for r in rows if r.subject != "base"]


def gather(client: ClientAPI, targets: list[str]) -> tuple[list[Subject], list[str]]:
    """The subjects of a report: the base model of the first target (where it was scored) and each target,
    all on the newest data set every target was scored on."""
    resolved = [client.resolve_target(t) for t in targets]
    rows = {t.label: _rows_for(client, t) for t in resolved}
    missing = [label for label, r in rows.items() if not r]
    if missing:
        raise UsageError(
            f"no stored evaluation for {', '.join(missing)}",
            hint=f"score them first: anytune eval {' '.join(targets)} --data HELD_OUT.jsonl",
        )
    warnings: list[str] = []
    common = set.intersection(*({r.dataset_fingerprint for r in rs} for rs in rows.values()))
    first_rows = rows[resolved[0].label]
    fingerprint = next(
        (r.dataset_fingerprint for r in reversed(first_rows) if r.dataset_fingerprint in common), None
    )
    if fingerprint is None:
        warnings.append(
            "the models were never scored on the same data: each is shown on its own latest evaluation"
        )
    subjects: list[Subject] = []
    for t in resolved:
        candidates = [r for r in rows[t.label] if fingerprint is None or r.dataset_fingerprint == fingerprint]
        subjects.append(Subject(t.label, candidates[-1], t))
    first = subjects[0].evaluation
    bases = [
        r
        for r in client.evaluations(dataset_fingerprint=first.dataset_fingerprint, subject="base")
        if r.model_id == resolved[0].base_model
    ]
    if bases:
        subjects.insert(0, Subject(f"base ({resolved[0].base_model})", bases[-1]))
    else:
        warnings.append(f"{resolved[0].base_model} (the base model) was not scored on this data: no A/B")
    return subjects, warnings


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "report"


def report_folder(home: Path, targets: list[str]) -> Path:
    """Where a report on `targets` goes when no folder is named: under $ANYTUNE_HOME/reports."""
    return home / "reports" / _slug("-vs-".join(targets))


def write_report(client: ClientAPI, targets: list[str], out_dir: Path | None = None) -> ReportFiles:
    """The report on `targets`, drawn from what `client` has stored (the Client's `report` calls this in the
    process that holds the registry; a client of a server asks the server to)."""
    folder = Path(out_dir) if out_dir else report_folder(anytune_home(), targets)
    subjects, warnings = gather(client, targets)
    folder.mkdir(parents=True, exist_ok=True)
    from anytune.evaluation import plots

    images: list[Path] = []
    curves = {s.label: _loss_curve(client, s) for s in subjects if s.target and s.target.job}
    curves = {k: v for k, v in curves.items() if v[0]}
    if curves:
        images.append(plots.loss_curves(curves, folder / "loss.png"))
    else:
        warnings.append("no training loss was recorded for these models (e.g. registered, not trained here)")
    rewards = {s.label: _loss_curve(client, s, "reward") for s in subjects if s.target and s.target.job}
    rewards = {k: v for k, v in rewards.items() if v[0]}
    if rewards:  # reinforcement fine-tuning: the grader's mean reward per step
        images.append(plots.loss_curves(rewards, folder / "reward.png", ylabel="mean reward"))
    metrics = list(subjects[-1].evaluation.metrics)
    shares = [m for m in metrics if is_fraction(m)]  # losses have their own scale: table only
    if shares:
        images.append(
            plots.metric_bars(
                [(s.label, s.evaluation.metrics, s.evaluation.ci) for s in subjects],
                shares,
                folder / "metrics.png",
            )
        )
    primary = shares[0] if shares else ""
    priced = [
        (s.label, *s.cost, s.evaluation.metrics.get(primary), s.evaluation.ci.get(primary)) for s in subjects
    ]
    priced = [p for p in priced if p[1] is not None]
    if priced and primary:
        images.append(plots.cost_quality(priced, primary, folder / "cost_quality.png"))
    examples, example_warning = _examples(subjects)
    if example_warning:
        warnings.append(example_warning)
    context = _context(subjects, metrics, examples, images, warnings)
    html_path = folder / "report.html"
    html_path.write_text(_html(context), encoding="utf-8")
    md_path = folder / "report.md"
    md_path.write_text(_markdown(context), encoding="utf-8")
    return ReportFiles(folder, html_path, md_path, images, warnings)


def _loss_curve(
    client: ClientAPI, s: Subject, key: str = "loss"
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The training curve of `key` (loss, or an RFT run's reward) and its validation counterpart."""
    assert s.target is not None and s.target.job is not None
    train: list[tuple[float, float]] = []
    evals: list[tuple[float, float]] = []
    for e in client.events(s.target.job.id, kind="metric"):
        step = e.data.get("step")
        if step is None:
            continue
        if key in e.data:
            train.append((float(step), float(e.data[key])))
        if f"eval_{key}" in e.data:
            evals.append((float(step), float(e.data[f"eval_{key}"])))
    return train, evals


def _examples(subjects: list[Subject]) -> tuple[list[ExampleRow], str | None]:
    from anytune.evaluation.runner import load_examples

    first = subjects[-1].evaluation
    try:
        prompts, references, fingerprint = load_examples(first.dataset_path)
    except Exception as exc:
        return [], f"the evaluation data {first.dataset_path} cannot be read any more ({type(exc).__name__})"
    if fingerprint != first.dataset_fingerprint:
        return [], f"{first.dataset_path} changed since it was scored: no per-example table"
    metric = next(iter(first.metrics))
    rows = []
    for i in range(min(MAX_EXAMPLES, len(references))):
        row = ExampleRow(prompt=prompts[i][-1]["content"] if prompts[i] else "", reference=references[i])
        for s in subjects:
            preds = (s.evaluation.samples or {}).get("predictions") or []
            scores = s.evaluation.scores(metric) or []
            row.answers.append((preds[i] if i < len(preds) else "", scores[i] if i < len(scores) else None))
        rows.append(row)
    return rows, None


@dataclass
class ExampleRow:
    """One held-out example in the per-example table: each subject's answer and its score."""

    prompt: Any
    reference: str
    answers: list[tuple[str, float | None]] = field(default_factory=list)


@dataclass
class ReportContext:
    """Everything the HTML and Markdown writers show, gathered once."""

    subjects: list[Subject]
    metrics: list[str]
    examples: list[ExampleRow]
    images: list[str]
    warnings: list[str]
    comparisons: list[dict[str, Any]]  # stored paired comparisons (evaluation.stats.Comparison, dumped)
    data: str
    fingerprint: str
    n: int


def _context(
    subjects: list[Subject],
    metrics: list[str],
    examples: list[ExampleRow],
    images: list[Path],
    warnings: list[str],
) -> ReportContext:
    comparisons: list[dict[str, Any]] = []
    for s in subjects:
        for c in (s.evaluation.samples or {}).get("comparisons") or []:
            if c not in comparisons:
                comparisons.append(c)
    last = subjects[-1].evaluation
    return ReportContext(
        subjects=subjects,
        metrics=metrics,
        examples=examples,
        images=[p.name for p in images],
        warnings=warnings,
        comparisons=comparisons,
        data=last.dataset_path,
        fingerprint=last.dataset_fingerprint,
        n=last.n,
    )


def _score(s: Subject, metric: str) -> str:
    value = s.evaluation.metrics.get(metric)
    if value is None:
        return "-"
    low, high = s.evaluation.ci.get(metric, (value, value))
    return f"{show(metric, value)} [{show(metric, low)}, {show(metric, high)}]"


def _lineage(s: Subject) -> list[tuple[str, str]]:
    ev = s.evaluation
    rows = [("provider", ev.provider), ("model", ev.model_id)]
    t = s.target
    if t is not None:
        rows.append(("base model", t.base_model))
        if t.model is not None:
            rows.append(
                (
                    "registered as",
                    t.model.ref + (f" ({', '.join(t.model.aliases)})" if t.model.aliases else ""),
                )
            )
            if t.model.base_model_retires:
                rows.append(("base model retires", t.model.base_model_retires.date().isoformat()))
            if t.model.dataset_fingerprint:
                rows.append(("training data", t.model.dataset_fingerprint[:23]))
        if t.job is not None:
            rows.append(("job", t.job.id + (f" ({t.job.provider_job_id})" if t.job.provider_job_id else "")))
    cost, kind = s.cost
    if cost is not None:
        rows.append(("cost", f"{cost:.4f} USD ({kind})"))
    return rows


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
body{padding:0 1rem}h1{font-size:1.5rem}
h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;margin:.5rem 0;border:1px solid #eee}
.ok{background:#e8f5e9}.bad{background:#ffebee}.warn{color:#8a6d3b}.dim{color:#777}code{font-size:.85rem}
"""


def _mark(score: float | None) -> str:
    return "ok" if score == 1 else "bad" if score == 0 else ""


def _html(c: ReportContext) -> str:
    e = html.escape
    subjects: list[Subject] = c.subjects
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>anytune report: {e(', '.join(s.label for s in subjects))}</title><style>{_CSS}</style></head><body>",
        f"<h1>anytune report: {e(', '.join(s.label for s in subjects))}</h1>",
        f"<p class='dim'>held-out data <code>{e(c.data)}</code> ({c.n} examples, {e(c.fingerprint[:23])})</p>",
    ]
    parts += [f"<p class='warn'>note: {e(w)}</p>" for w in c.warnings]
    parts.append("<h2>Scores</h2><p class='dim'>value [95% bootstrap interval]</p><table><tr><th>metric</th>")
    parts += [f"<th>{e(s.label)}</th>" for s in subjects]
    parts.append("</tr>")
    for m in c.metrics:
        parts.append(
            f"<tr><td>{e(m)}</td>"
            + "".join(f"<td class='num'>{e(_score(s, m))}</td>" for s in subjects)
            + "</tr>"
        )
    parts.append("</table>")
    if c.comparisons:
        parts.append(
            "<h2>Head to head</h2>"
            "<p class='dim'>paired bootstrap on the same examples; win rate = wins / (wins + losses)</p>"
        )
        heads = ("metric", "A", "B", "B - A", "95% interval", "wins / ties / losses", "win rate")
        parts.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>")
        for cmp in c.comparisons:
            wtl = "-" if cmp.get("wins") is None else f"{cmp['wins']} / {cmp['ties']} / {cmp['losses']}"
            rate = "-" if cmp.get("win_rate") is None else f"{cmp['win_rate']:.0%}"
            mark = " *" if cmp.get("significant") else ""
            parts.append(
                f"<tr><td>{e(cmp['metric'])}</td><td>{e(cmp['a'])}</td><td>{e(cmp['b'])}</td>"
                f"<td class='num'>{show(cmp['metric'], cmp['delta'], True)}{mark}</td>"
                f"<td class='num'>[{show(cmp['metric'], cmp['low'], True)}, {show(cmp['metric'], cmp['high'], True)}]</td>"
                f"<td class='num'>{wtl}</td><td class='num'>{rate}</td></tr>"
            )
        parts.append("</table>")
    titles = {
        "loss.png": "Training loss",
        "reward.png": "Mean reward per step (reinforcement fine-tuning)",
        "metrics.png": "Scores with 95% intervals",
        "cost_quality.png": "Cost and quality",
    }
    for image in c.images:
        parts.append(
            f"<h2>{titles.get(image, image)}</h2><img src='{e(image)}' alt='{e(titles.get(image, image))}'>"
        )
    parts.append("<h2>Models</h2>")
    for s in subjects:
        parts.append(f"<h3>{e(s.label)}</h3><table>")
        parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _lineage(s)]
        parts.append("</table>")
    if c.examples:
        metric = c.metrics[0]
        parts.append(
            f"<h2>Examples</h2><p class='dim'>first {len(c.examples)}; green/red: {e(metric)} 1/0</p>"
        )
        parts.append(
            "<table><tr><th>#</th><th>prompt</th><th>reference</th>"
            + "".join(f"<th>{e(s.label)}</th>" for s in subjects)
            + "</tr>"
        )
        for i, ex in enumerate(c.examples, 1):
            cells = "".join(
                f"<td class='{_mark(score)}'>{e(str(answer))}</td>" for answer, score in ex.answers
            )
            parts.append(
                f"<tr><td class='num'>{i}</td><td>{e(str(ex.prompt))}</td><td>{e(str(ex.reference))}</td>{cells}</tr>"
            )
        parts.append("</table>")
    parts.append("<p class='dim'>written by anytune</p></body></html>")
    return "\n".join(parts)


def _md_cell(text: Any) -> str:
    """Text from models, data and users, made inert in Markdown: Markdown renderers pass raw HTML through,
    so `<script>` in training data must arrive as text, and a `|` or a newline must not break the table."""
    return html.escape(str(text), quote=False).replace("`", "'").replace("|", "\\|").replace("\n", " ")


def _markdown(c: ReportContext) -> str:
    subjects: list[Subject] = c.subjects
    lines = [f"# anytune report: {_md_cell(', '.join(s.label for s in subjects))}", ""]
    lines.append(f"Held-out data `{_md_cell(c.data)}` ({c.n} examples, `{_md_cell(c.fingerprint[:23])}`).")
    lines += ["", *(f"> note: {_md_cell(w)}" for w in c.warnings)]
    lines += ["", "## Scores", "", "value [95% bootstrap interval]", ""]
    lines.append("| metric | " + " | ".join(_md_cell(s.label) for s in subjects) + " |")
    lines.append("|---|" + "---|" * len(subjects))
    for m in c.metrics:
        lines.append(f"| {m} | " + " | ".join(_score(s, m) for s in subjects) + " |")
    if c.comparisons:
        lines += [
            "",
            "## Head to head",
            "",
            "| metric | A | B | B - A | 95% interval | win rate |",
            "|---|---|---|---|---|---|",
        ]
        for cmp in c.comparisons:
            rate = "-" if cmp.get("win_rate") is None else f"{cmp['win_rate']:.0%}"
            m = cmp["metric"]
            lines.append(
                f"| {m} | {_md_cell(cmp['a'])} | {_md_cell(cmp['b'])} | {show(m, cmp['delta'], True)} | "
                f"[{show(m, cmp['low'], True)}, {show(m, cmp['high'], True)}] | {rate} |"
            )
    for image in c.images:
        lines += ["", f"![{image}]({image})"]
    lines += ["", "## Models"]
    for s in subjects:
        lines += ["", f"### {_md_cell(s.label)}", ""]
        lines += [f"- {k}: {_md_cell(v)}" for k, v in _lineage(s)]
    if c.examples:
        lines += [
            "",
            "## Examples",
            "",
            "| # | prompt | reference | " + " | ".join(_md_cell(s.label) for s in subjects) + " |",
        ]
        lines.append("|---|---|---|" + "---|" * len(subjects))
        for i, ex in enumerate(c.examples, 1):
            answers = " | ".join(
                _md_cell(a) + (" ✓" if sc == 1 else " ✗" if sc == 0 else "") for a, sc in ex.answers
            )
            lines.append(f"| {i} | {_md_cell(ex.prompt)} | {_md_cell(ex.reference)} | {answers} |")
    return "\n".join(lines) + "\n"
