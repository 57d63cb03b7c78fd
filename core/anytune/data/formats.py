"""The data formats anytune knows, and how to tell which one a record is in.

Detection goes by keys only, so that it is cheap enough to run on every line of a large file; the
validators in `anytune.data.validate` then check the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class DataFormat(StrEnum):
    CHAT = "chat"  # {"messages": [{"role", "content"}, ...]}  (OpenAI's SFT format; anytune's canonical one)
    INSTRUCTION = "instruction"  # {"instruction", "input"?, "output"}  (Alpaca)
    COMPLETION = "completion"  # {"prompt", "completion"}
    TEXT = "text"  # {"text"}  (continued pre-training)
    PREFERENCE = "preference"  # {"prompt", "chosen", "rejected"}  (TRL)
    OPENAI_PREFERENCE = "openai_preference"  # {"input", "preferred_output", "non_preferred_output"}


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


def parse_format(value: str) -> DataFormat:
    """A DataFormat from a user's string, accepting a few common synonyms."""
    synonyms = {
        "messages": DataFormat.CHAT,
        "conversation": DataFormat.CHAT,
        "conversational": DataFormat.CHAT,
        "alpaca": DataFormat.INSTRUCTION,
        "prompt_completion": DataFormat.COMPLETION,
        "dpo": DataFormat.PREFERENCE,
        "openai-preference": DataFormat.OPENAI_PREFERENCE,
        "general": DataFormat.TEXT,
    }
    key = value.strip().lower()
    if key in synonyms:
        return synonyms[key]
    return DataFormat(key)
