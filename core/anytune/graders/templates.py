"""Grader templates: `{{sample.output_text}}`, `{{sample.output_json.key}}` and `{{item.field}}` (a dotted
path into the data line), as OpenAI's graders write them, rendered the same way for every provider."""

from __future__ import annotations

import json
import re
from typing import Any

from anytune.errors import UsageError

_PLACE = re.compile(r"\{\{(.*?)\}\}", re.S)
_REF = re.compile(
    r"^\s*(sample\.output_text|sample\.output_json(?:\.[A-Za-z0-9_\-]+)*|item(?:\.[A-Za-z0-9_\-]+)+)\s*$"
)


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


def _walk(value: Any, path: list[str], where: str) -> Any:
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            have = ", ".join(sorted(value)[:20]) if isinstance(value, dict) else type(value).__name__
            raise GraderInputError(
                f"the grader reads {where} but there is no {key!r} there (it has: {have or 'nothing'})",
                hint="add the field to every data line, or change the grader's template",
            )
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render(template: str, sample: dict[str, Any], item: dict[str, Any]) -> str:
    """The template with each placeholder replaced by the answer's or the item's value (JSON for
    non-strings)."""

    def one(found: re.Match[str]) -> str:
        ref = found.group(1).strip()
        head, *path = ref.split(".")
        if head == "item":
            return _text(_walk(item, path, "{{" + ref + "}}"))
        if path[0] == "output_text":
            return str(sample.get("output_text", ""))
        output_json = sample.get("output_json")
        if output_json is None:
            raise GraderInputError(f"the grader reads {{{{{ref}}}}} but the answer is not JSON")
        return _text(_walk(output_json, path[1:], "{{" + ref + "}}"))

    return _PLACE.sub(one, template)


def sample_of(answer: str) -> dict[str, Any]:
    """What graders see of one answer: its text, and its JSON value when it parses as JSON."""
    sample: dict[str, Any] = {"output_text": answer}
    try:
        sample["output_json"] = json.loads(answer)
    except ValueError:
        pass
    return sample
