"""Job specs outlive the code that wrote them: each stored spec carries `spec_version`, and reading one
written by an older anytune upgrades it here, one small step per version, before it is validated.

A field renamed, moved or removed in `JobSpec` therefore never makes a registry unreadable (`jobs list` on a
year-old registry, a server answering an older client): write the step that turns version N's shape into
N+1's, add it to `UPGRADES` under N, raise `anytune.spec.SPEC_VERSION`, and test the step on a spec (or a
registry) written by version N. Specs are upgraded where they enter: a job file or request body
(`anytune.jobfile.spec_from_dict`), a job read from the registry or a server (`Job.spec`), a model's
recorded spec. The registry's rows are not rewritten: an older anytune can still read what it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from anytune.errors import SpecError
from anytune.spec import SPEC_VERSION, JobSpec

Step = Callable[[dict[str, Any]], dict[str, Any]]


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 1: every spec written before `spec_version` existed (anytune up to 2026-12-07). Version 2
    only adds the field itself; nothing else changed."""
    return raw


# UPGRADES[n] turns a version-n spec into a version n+1 spec
UPGRADES: dict[int, Step] = {1: _v1_to_v2}


def current_version() -> int:
    """The version the steps lead to (equal to `SPEC_VERSION`, which a test holds them to)."""
    return max(UPGRADES, default=0) + 1


def stored_version(raw: Mapping[str, Any]) -> int:
    """The version a spec was written in: its `spec_version`, or 1 for a spec from before the field."""
    version = raw.get("spec_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SpecError(
            f"spec_version {version!r} is not a version number",
            hint="leave spec_version out: anytune writes it",
        )
    return version


def upgrade(raw: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` (a spec as JSON, in any known version) in the current version's shape, not yet validated."""
    version, current = stored_version(raw), current_version()
    if version > current:
        raise SpecError(
            f"this job spec is spec_version {version}, newer than this anytune knows ({current})",
            hint="upgrade anytune (pip install -U anytune) to read it",
        )
    spec = dict(raw)
    while version < current:
        spec = UPGRADES[version](spec)
        version += 1
        spec["spec_version"] = version
    return spec


def read_spec(raw: Mapping[str, Any] | JobSpec) -> JobSpec:
    """A stored spec (any known version) as the current `JobSpec`."""
    if isinstance(raw, JobSpec):
        return raw
    return JobSpec.model_validate(upgrade(raw))


def upgraded_dict(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A spec kept as JSON (a model version's lineage), in the current version's shape."""
    return None if raw is None else upgrade(raw)


__all__ = ["SPEC_VERSION", "UPGRADES", "current_version", "read_spec", "upgrade", "upgraded_dict"]
