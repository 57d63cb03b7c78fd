"""The data formats anytune knows (`DataFormat`, part of the job spec's vocabulary), and how to tell which
one a record is in.

Detection goes by keys only, so that it is cheap enough to run on every line of a large file; the
validators in `anytune.data.validate` then check the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anytune.spec import DataFormat, parse_format

__all__ = ["DataFormat", "detect_record", "parse_format"]

PREFERENCE_FORMATS = frozenset({DataFormat.PREFERENCE, DataFormat.OPENAI_PREFERENCE})
SUPERVISED_FORMATS = frozenset({DataFormat.CHAT, DataFormat.INSTRUCTION, DataFormat.COMPLETION})

# The keys that identify each format, most specific first: a preference row also has "prompt", so it must
# be tried before the completion format.
SIGNATURES: tuple[tuple[DataFormat, frozenset[str]], ...] = (
    (DataFormat.OPENAI_PREFERENCE, frozenset({"input", "preferred_output", "non_preferred_output"})),
    (DataFormat.PREFERENCE, frozenset({"chosen", "rejected"})),
    (DataFormat.CHAT, frozenset({"messages"})),
    (DataFormat.INSTRUCTION, frozenset({"instruction", "output"})),
    (DataFormat.COMPLETION, frozenset({"prompt", "completion"})),
    (DataFormat.TEXT, frozenset({"text"})),
)

REQUIRED_KEYS: dict[DataFormat, frozenset[str]] = {
    DataFormat.CHAT: frozenset({"messages"}),
    DataFormat.INSTRUCTION: frozenset({"instruction", "output"}),
    DataFormat.COMPLETION: frozenset({"prompt", "completion"}),
    DataFormat.TEXT: frozenset({"text"}),
    DataFormat.PREFERENCE: frozenset({"prompt", "chosen", "rejected"}),
    DataFormat.OPENAI_PREFERENCE: frozenset({"input", "preferred_output", "non_preferred_output"}),
}

OPTIONAL_KEYS: dict[DataFormat, frozenset[str]] = {
    DataFormat.CHAT: frozenset({"tools", "parallel_tool_calls", "functions", "metadata", "id"}),
    DataFormat.INSTRUCTION: frozenset({"input", "system", "metadata", "id"}),
    DataFormat.COMPLETION: frozenset({"metadata", "id"}),
    DataFormat.TEXT: frozenset({"metadata", "id"}),
    DataFormat.PREFERENCE: frozenset({"metadata", "id", "system"}),
    DataFormat.OPENAI_PREFERENCE: frozenset({"metadata", "id"}),
}


def detect_record(record: Any) -> DataFormat | None:
    """The format whose identifying keys a record has, or None."""
    if not isinstance(record, Mapping):
        return None
    keys = record.keys()
    for fmt, signature in SIGNATURES:
        if signature <= keys:
            return fmt
    # Partial signatures: enough to say what the user meant, so that validation can name the missing field.
    if "messages" in keys:
        return DataFormat.CHAT
    if "instruction" in keys:
        return DataFormat.INSTRUCTION
    if "preferred_output" in keys or "non_preferred_output" in keys:
        return DataFormat.OPENAI_PREFERENCE
    if "prompt" in keys:
        return DataFormat.COMPLETION
    return None
