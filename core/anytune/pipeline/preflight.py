"""The first three stages as one: check, prepare, quote. Nothing is recorded, uploaded or started; what
comes out (`Preflight`) is what the record stage writes and the submit stage sends."""

from __future__ import annotations

from anytune.api import Preflight
from anytune.pipeline.checks import check
from anytune.pipeline.context import Pipeline
from anytune.pipeline.prepare import prepare
from anytune.pipeline.quote import quote
from anytune.spec import JobSpec


def preflight(p: Pipeline, spec: JobSpec, *, quote_only: bool = False) -> Preflight:
    """Check the spec and its data, prepare the data for the provider, quote it; raise on the first kind of
    problem found.

    `quote_only=True` is for comparisons: the registry is left untouched, missing credentials are a warning
    (they are needed to submit, not to price), and an over-budget quote or one whose data the provider would
    refuse is returned (with the problems), not raised."""
    checked = check(p, spec, quote_only=quote_only)
    return quote(checked, prepare(checked))
