"""Stage 1, the checks: the spec against the backend (capabilities, `check_spec`), the names its evaluation
uses, and every data file line by line. Anything wrong refuses the job here, all problems at once, before
anything is recorded, uploaded or paid for."""

from __future__ import annotations

from dataclasses import dataclass, field

from anytune.api import Preflight
from anytune.data.validate import ValidationReport
from anytune.errors import AnytuneError
from anytune.hookspecs import CREDENTIALS, Backend, Capabilities, DataBundle, Problem
from anytune.pipeline.capabilities import check_spec, raise_for_problems
from anytune.pipeline.context import Pipeline
from anytune.pipeline.datachecks import check_data
from anytune.pipeline.datarefs import local_spec
from anytune.pipeline.evaluate import metric_defs, resolve_judge
from anytune.spec import JobSpec


@dataclass
class Checked:
    """A job that passed the checks: its backend, and its data as validated."""

    spec: JobSpec
    backend: Backend
    capabilities: Capabilities
    data: DataBundle
    reports: dict[str, ValidationReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    quote_only: bool = False


def check(p: Pipeline, spec: JobSpec, *, quote_only: bool = False) -> Checked:
    """Raise on the first kind of problem found (every problem of that kind listed).

    `quote_only` is for comparisons: nothing is recorded (not even the data files' statistics), and a
    missing key is a warning (it is needed to submit, not to price)."""
    p.may_read(spec.files_read())
    backend = p.backend(spec.provider)
    caps = backend.capabilities()
    problems = _with_alternatives(p, spec, check_spec(spec, caps, spec.provider))
    problems += backend.check_spec(spec)
    if quote_only:
        problems = [
            Problem("warning", x.field, f"{x.message} (needed to submit, not to quote)")
            if x.field == CREDENTIALS
            else x
            for x in problems
        ]
    warnings = [str(x) for x in raise_for_problems(problems, spec.provider)]
    check_evaluation(p, spec)
    data = check_data(p.data, None if quote_only else p.registry, local_spec(p, spec), caps)
    return Checked(
        spec, backend, caps, data.bundle, data.reports, warnings + data.warnings, quote_only=quote_only
    )


def check_evaluation(p: Pipeline, spec: JobSpec) -> None:
    """The evaluation runs after the paid training: every name in it (metrics, the judge) must be known
    before anything is paid for."""
    if spec.evaluation is None:
        return
    metric_defs(p, spec.evaluation, spec)
    if spec.evaluation.judge:
        resolve_judge(p, spec.evaluation.judge)


def _with_alternatives(p: Pipeline, spec: JobSpec, problems: list[Problem]) -> list[Problem]:
    """A method or adapter a provider cannot do: say which installed providers can."""
    if not any(x.field in ("method", "adapter") and x.severity == "error" for x in problems):
        return problems
    able = []
    for name in p.plugins.backend_names():
        if name == spec.provider:
            continue
        try:
            caps = p.backend(name).capabilities()
        except AnytuneError:
            continue
        if spec.method_type in caps.methods and spec.adapter_type in caps.adapters:
            able.append(name)
    suffix = f"; providers that can: {', '.join(able)}" if able else "; no installed provider can"
    return [
        Problem(x.severity, x.field, x.message + suffix) if x.field in ("method", "adapter") else x
        for x in problems
    ]


__all__ = ["Checked", "Preflight", "check", "check_evaluation"]
