"""Stage 2, prepare: the backend converts the checked data to its provider's format once, applies every
rule of the provider (a `Problem` with file and line for each record it would refuse), counts the tokens it
bills and writes content-addressed files, with no network. A quote prepares without writing."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence

from anytune.data.prepared import files_not_written
from anytune.data.split import source_line
from anytune.errors import DataError
from anytune.hookspecs import Backend, DataBundle, PreparedData, Problem
from anytune.pipeline.checks import Checked
from anytune.spec import JobSpec, Method


def prepare(checked: Checked) -> PreparedData:
    """`backend.prepare()`, its problems' lines mapped back to the user's own files, and the provider's
    fewest examples checked. Errors stay in the result: the quote stage refuses (or, quoting, shows) them."""
    spec, bundle = checked.spec, checked.data
    with files_not_written() if checked.quote_only else contextlib.nullcontext():
        prepared = mapped_prepare(checked.backend, spec, bundle)
    minimum = checked.capabilities.limits.min_examples
    if minimum and bundle.train.rows < minimum:
        prepared.problems.insert(
            0,
            Problem(
                "error",
                "data.train",
                f"{bundle.train.rows} training example(s); {spec.provider} needs at least {minimum}",
                file=spec.data.train,
            ),
        )
    return prepared


def mapped_prepare(backend: Backend, spec: JobSpec, bundle: DataBundle) -> PreparedData:
    """backend.prepare(), with each problem's line mapped back to the user's own file (a split file's lines
    come from the file it was cut from)."""
    prepared = backend.prepare(spec, bundle)
    if spec.method_type is Method.RFT:  # the grader on the data, for every provider, before any upload
        from anytune.graders.datacheck import grader_problems
        from anytune.graders.spec import as_one

        prepared.problems.extend(grader_problems(as_one(spec.method.grader), bundle))
    origins = {
        ref.path: ref.origin
        for ref in (bundle.train, bundle.validation, bundle.test)
        if ref is not None and ref.origin
    }
    if not origins:
        return prepared
    mapped = []
    for x in prepared.problems:
        if x.file in origins:
            line = source_line(x.file, x.line) if x.line else None
            x = dataclasses.replace(x, file=origins[x.file], line=line)
        mapped.append(x)
    return prepared.model_copy(update={"problems": mapped})


def data_refusal(provider: str, errors: Sequence[Problem]) -> DataError:
    """The error for data a provider would refuse: every problem with its file and line (up to 200)."""
    details = [str(x) for x in errors[:200]]
    if len(errors) > 200:
        details.append(f"... and {len(errors) - 200} more")
    return DataError(
        f"the data does not meet {provider}'s rules ({len(errors)} problem{'s' if len(errors) != 1 else ''}); "
        "nothing was recorded or uploaded",
        details=details,
        hint="fix the lines named, or choose another provider with --provider",
    )
