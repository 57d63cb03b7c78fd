"""Conversion between data formats, record by record and file by file.

Chat (`messages`) is the hub: every supervised format converts to and from it where the meaning survives.
A conversion that would lose meaning (a multi-turn chat to one instruction, a chat to raw text without a
template) is refused for that record, with the line, rather than done badly.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from anytune.data.formats import DataFormat
from anytune.data.records import as_messages, content_text, instruction_prompt, prompt_and_target
from anytune.data.validate import RecordValidator, require_valid
from anytune.errors import DataError
from anytune.paths import resolved


class ConversionError(ValueError):
    """This record cannot be expressed in the target format."""


def _single_turn(record: dict[str, Any], fmt: DataFormat) -> tuple[str | None, str, str]:
    """(system, user text, assistant text) of a one-question-one-answer record, or ConversionError."""
    prompt, target = prompt_and_target(record, fmt)
    system = None
    if prompt and prompt[0].get("role") == "system":
        system = content_text(prompt[0].get("content"))
        prompt = prompt[1:]
    if len(prompt) != 1 or prompt[0].get("role") != "user":
        raise ConversionError(
            "only a single user turn (with an optional system message) converts to this format"
        )
    if fmt is DataFormat.CHAT and record["messages"][-1].get("role") != "assistant":
        raise ConversionError("the conversation must end with the assistant's answer")
    return system, content_text(prompt[0].get("content")), target


def _to_chat(record: dict[str, Any], src: DataFormat) -> dict[str, Any]:
    if src is DataFormat.COMPLETION:
        messages = as_messages(record["prompt"], "user") + as_messages(record["completion"], "assistant")
        return {"messages": messages}
    if src is DataFormat.INSTRUCTION:
        prompt, target = prompt_and_target(record, src)
        return {"messages": [*prompt, {"role": "assistant", "content": target}]}
    raise ConversionError(f"{src.value} data does not convert to chat")


def _from_chat(record: dict[str, Any], dst: DataFormat) -> dict[str, Any]:
    messages = record["messages"]
    if dst is DataFormat.COMPLETION:
        if messages[-1].get("role") != "assistant":
            raise ConversionError("the conversation must end with the assistant's answer")
        prompt = messages[:-1]
        if len(prompt) == 1 and prompt[0].get("role") == "user" and isinstance(prompt[0].get("content"), str):
            return {"prompt": prompt[0]["content"], "completion": content_text(messages[-1].get("content"))}
        return {"prompt": prompt, "completion": [messages[-1]]}
    if dst is DataFormat.INSTRUCTION:
        system, user, answer = _single_turn(record, DataFormat.CHAT)
        out: dict[str, Any] = {"instruction": user, "input": "", "output": answer}
        if system:
            out["system"] = system
        return out
    raise ConversionError(f"chat data does not convert to {dst.value}")


def convert_record(record: dict[str, Any], src: DataFormat, dst: DataFormat) -> dict[str, Any]:
    """`record` (valid in `src`) expressed in `dst`; ConversionError if the meaning would not survive."""
    if src is dst:
        return record
    if dst is DataFormat.TEXT:
        if src is DataFormat.INSTRUCTION:
            return {"text": f"{instruction_prompt(record)}\n\n{record['output']}"}
        if (
            src is DataFormat.COMPLETION
            and isinstance(record["prompt"], str)
            and isinstance(record["completion"], str)
        ):
            return {"text": record["prompt"] + record["completion"]}
        raise ConversionError(
            f"{src.value} data needs a chat template to become raw text; train on it directly"
        )
    if src is DataFormat.PREFERENCE and dst is DataFormat.OPENAI_PREFERENCE:
        prompt, _ = prompt_and_target(record, src)
        return {
            "input": {"messages": prompt},
            "preferred_output": as_messages(record["chosen"], "assistant")[-1:],
            "non_preferred_output": as_messages(record["rejected"], "assistant")[-1:],
        }
    if src is DataFormat.OPENAI_PREFERENCE and dst is DataFormat.PREFERENCE:
        return {
            "prompt": record["input"]["messages"],
            "chosen": record["preferred_output"],
            "rejected": record["non_preferred_output"],
        }
    if {src, dst} & {DataFormat.PREFERENCE, DataFormat.OPENAI_PREFERENCE, DataFormat.TEXT}:
        raise ConversionError(f"{src.value} data does not convert to {dst.value}")
    if dst is DataFormat.CHAT:
        return _to_chat(record, src)
    if src is DataFormat.CHAT:
        return _from_chat(record, dst)
    # instruction <-> completion, through their single-turn meaning
    system, user, answer = _single_turn(record, src)
    if dst is DataFormat.COMPLETION:
        if system:
            return {
                "prompt": [{"role": "system", "content": system}, {"role": "user", "content": user}],
                "completion": answer,
            }
        return {"prompt": user, "completion": answer}
    out: dict[str, Any] = {"instruction": user, "input": "", "output": answer}
    if system:
        out["system"] = system
    return out


class ConversionReport(BaseModel):
    source: str
    target: str
    source_format: DataFormat
    target_format: DataFormat
    rows: int


def write_jsonl_atomic(path: Path, rows: Any) -> int:
    """Write records as JSONL through a temporary file, so that a failure never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False))
                fh.write("\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


class _Refused(Exception):
    """The data cannot be converted whole: the output is not written."""


def convert_file(
    source: str | Path, target: str | Path, to: DataFormat, *, source_format: DataFormat | None = None
) -> ConversionReport:
    """Convert a whole file. All-or-nothing: any invalid or unconvertible record means no output file, and a
    file already at `target` stays as it was."""
    source, target = Path(source), Path(target)
    if resolved(source) == resolved(target):
        raise DataError(f"{target}: the output would overwrite the input", hint="choose another output path")
    validator = RecordValidator(source, format=source_format, collect_stats=False)
    failures: list[str] = []

    def rows() -> Any:
        for line, record in validator:
            try:
                yield convert_record(record, validator.format, to)  # type: ignore[arg-type]
            except ConversionError as exc:
                if len(failures) < 1000:
                    failures.append(f"{source}:{line}: {exc}")
        if validator.report.errors or failures:
            raise _Refused  # before the temporary file takes the target's place: it is deleted instead

    try:
        count = write_jsonl_atomic(target, rows())
    except _Refused:
        count = None
    if count is None:  # outside the handler: the errors raised here are the user's, not a chain of ours
        require_valid(validator.report)
        raise DataError(
            f"{source}: {len(failures)} record(s) cannot be converted to {to.value}; nothing was written",
            details=failures,
        )
    return ConversionReport(
        source=str(source),
        target=str(target),
        source_format=validator.format,
        target_format=to,
        rows=count,
    )
