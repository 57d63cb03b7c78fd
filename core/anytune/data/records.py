"""Reading the meaning out of a record: its text, its prompt and its target, whatever its format.

These are the single place that knows where the prompt and the answer live in each format; stats,
leakage checks, conversion and evaluation all go through them.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from anytune.data.formats import DataFormat

Messages = list[dict[str, Any]]


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return str(content)


MESSAGE_EXTRAS = ("name", "tool_calls", "tool_call_id")


def normalize_messages(messages: Messages, keep: tuple[str, ...] = MESSAGE_EXTRAS) -> Messages:
    """Messages as chat templates and providers take them: content parts joined to one string, the role,
    and of the other keys only those in `keep` that are set (tool calls by default, so a multi-turn chat
    keeps them as a single-turn one does). The one message normaliser of anytune and its plugins."""
    out = []
    for m in messages:
        message: dict[str, Any] = {"role": m["role"], "content": content_text(m.get("content"))}
        for key in keep:
            if m.get(key) is not None:
                message[key] = m[key]
        out.append(message)
    return out


def as_messages(value: Any, role: str) -> Messages:
    """A prompt or answer given as a string becomes one message; a list of messages stays as it is."""
    if isinstance(value, list):
        return [dict(m) for m in value]
    return [{"role": role, "content": value if isinstance(value, str) else content_text(value)}]


def instruction_prompt(record: dict[str, Any]) -> str:
    instruction = record.get("instruction") or ""
    extra = record.get("input") or ""
    return f"{instruction}\n\n{extra}" if extra else instruction


def prompt_and_target(record: dict[str, Any], fmt: DataFormat) -> tuple[Messages, str]:
    """The chat prompt a model would be given, and the answer it should produce.

    For chat data the target is the last assistant message and the prompt everything before it; for
    preference data the target is the chosen answer.
    """
    if fmt is DataFormat.CHAT:
        messages = record["messages"]
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last is None:
            return list(messages), ""
        return list(messages[:last]), content_text(messages[last].get("content"))
    if fmt is DataFormat.INSTRUCTION:
        prompt: Messages = []
        if record.get("system"):
            prompt.append({"role": "system", "content": record["system"]})
        prompt.append({"role": "user", "content": instruction_prompt(record)})
        return prompt, record.get("output") or ""
    if fmt is DataFormat.COMPLETION:
        return as_messages(record["prompt"], "user"), _answer_text(record["completion"])
    if fmt is DataFormat.PREFERENCE:
        prompt = as_messages(record["prompt"], "user")
        if record.get("system") and not any(m.get("role") == "system" for m in prompt):
            prompt.insert(0, {"role": "system", "content": record["system"]})
        return prompt, _answer_text(record["chosen"])
    if fmt is DataFormat.OPENAI_PREFERENCE:
        return list(record["input"]["messages"]), _answer_text(record["preferred_output"])
    return [], record.get("text") or ""


def _answer_text(value: Any) -> str:
    if isinstance(value, list):
        texts = [content_text(m.get("content")) for m in value if isinstance(m, dict)]
        return "\n".join(t for t in texts if t)
    return content_text(value)


def full_text(record: dict[str, Any], fmt: DataFormat) -> str:
    """All the text a model trains on in this record, rendered ChatML-like for counting tokens.

    For preference data both answers count (a DPO step reads prompt+chosen and prompt+rejected).
    """
    if fmt is DataFormat.TEXT:
        return record.get("text") or ""
    if fmt is DataFormat.CHAT:
        return render_messages(record["messages"])
    if fmt is DataFormat.PREFERENCE:
        prompt = render_messages(as_messages(record["prompt"], "user"))
        chosen = render_messages(as_messages(record["chosen"], "assistant"))
        rejected = render_messages(as_messages(record["rejected"], "assistant"))
        return prompt + chosen + prompt + rejected
    if fmt is DataFormat.OPENAI_PREFERENCE:
        prompt = render_messages(record["input"]["messages"])
        return (
            prompt
            + render_messages(record["preferred_output"])
            + prompt
            + render_messages(record["non_preferred_output"])
        )
    prompt, target = prompt_and_target(record, fmt)
    return render_messages([*prompt, {"role": "assistant", "content": target}])


def render_messages(messages: Messages) -> str:
    parts = []
    for m in messages:
        text = content_text(m.get("content"))
        if m.get("tool_calls"):
            text += json.dumps(m["tool_calls"], ensure_ascii=False)
        parts.append(f"<|im_start|>{m.get('role', '')}\n{text}<|im_end|>\n")
    return "".join(parts)


_WS = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip().casefold()


def prompt_key(record: dict[str, Any], fmt: DataFormat) -> str:
    """A normalized key for "the same question" (case and spacing ignored): keeps a prompt on one side of
    a split, and finds it when it leaked to the other side."""
    if fmt is DataFormat.TEXT:
        return _norm(record.get("text") or "")
    prompt, _ = prompt_and_target(record, fmt)
    return "\n".join(f"{m.get('role')}:{_norm(content_text(m.get('content')))}" for m in prompt)


def canonical_json(record: Any) -> bytes:
    """One byte string per record, the same whatever the key order, spacing or line ending of the file.

    The bytes are `json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":"))`'s, which fingerprints
    have always hashed. orjson writes the same bytes 3x faster except for floats under 1e-4 (`1e-05` is
    `0.00001` or `1e-5` there) and integers beyond 64 bits: those records are written by `json`."""
    if _fast_dumps is not None:
        try:
            data: bytes = _fast_dumps(record, option=_SORT_KEYS)
        except TypeError:  # a 65-bit integer, a key that is not a string
            pass
        else:
            if not _small_float(data):
                return data
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


try:
    import orjson

    _fast_dumps: Any = orjson.dumps
    _SORT_KEYS = orjson.OPT_SORT_KEYS
except ImportError:  # pragma: no cover - orjson is a dependency
    _fast_dumps, _SORT_KEYS = None, 0


def _small_float(data: bytes) -> bool:
    """Whether orjson may have written a float unlike `json` (`1e-7` for `1e-07`, `0.00001` for `1e-05`).
    Text that merely looks like one takes the slow path too; substring searches keep the check cheap."""
    if b"0.0000" in data:
        return True
    at = data.find(b"e-")
    while at != -1:
        digit_before, digit_after = data[at - 1 : at].isdigit(), data[at + 2 : at + 3].isdigit()
        if at > 0 and digit_before and digit_after and not data[at + 3 : at + 4].isdigit():
            return True
        at = data.find(b"e-", at + 2)
    return False


def hash64(data: bytes | str) -> int:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
