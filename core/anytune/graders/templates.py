"""Grader templates: `{{sample.output_text}}`, `{{sample.output_json.key}}` and `{{item.field}}` (a dotted
path into the data line), as OpenAI's graders write them, rendered the same way for every provider."""

from __future__ import annotations

from typing import Any

from anytune.errors import UsageError
from anytune.graders import runtime

_PLACE, _REF = runtime.PLACE, runtime.REF
MISSING_HINT = "add the field to every data line, or change the grader's template"


class GraderInputError(UsageError):
    """A grader reads a field the item (or the answer) does not have."""


def check_template(value: str) -> str:
    """`value`, or a ValueError naming the first placeholder that is not one of the three kinds."""
    for found in _PLACE.finditer(value):
        if not _REF.match(found.group(1)):
            raise ValueError(
                f"{{{{{found.group(1).strip()[:80]}}}}} is not a grader field: use {{{{sample.output_text}}}}, "
                "{{sample.output_json.KEY}} or {{item.FIELD}}"
            )
    return value


def item_fields(template: str) -> set[str]:
    """The top-level item fields a template reads (to check a data file before anything is uploaded)."""
    out = set()
    for found in _PLACE.finditer(template):
        ref = found.group(1).strip()
        if ref.startswith("item."):
            out.add(ref.split(".")[1])
    return out


def render(template: str, sample: dict[str, Any], item: dict[str, Any]) -> str:
    """The template with each placeholder replaced by the answer's or the item's value (JSON for
    non-strings); GraderInputError naming the field when there is no such field."""
    try:
        return runtime.render(template, sample, item)
    except runtime.FieldMissing as exc:
        raise GraderInputError(str(exc), hint=MISSING_HINT) from None


sample_of = runtime.sample_of
