"""Turning validated data into the JSONL OpenAI takes, and checking OpenAI's own limits first.

Every anytune format converts: chat stays chat, instruction and completion become chat, preference data
becomes OpenAI's `input` / `preferred_output` / `non_preferred_output`. OpenAI's limits are checked here,
with the line of the user's own file, before anything is uploaded. The output file is named after its
content hash, which is how an upload is found again instead of being repeated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anytune.cost.billing import TokenCount, count_chat_rule
from anytune.data.convert import ConversionError, convert_record, write_jsonl_atomic
from anytune.data.formats import DataFormat
from anytune.data.tokens import ApproxCounter, TokenCounter, get_token_counter
from anytune.data.validate import RecordValidator
from anytune.errors import DataError, UsageError
from anytune.hookspecs import DatasetRef
from anytune.settings import cache_dir
from anytune.spec import Method
from anytune_openai.catalog import OpenAIModel

MIN_EXAMPLES = 10
MAX_FILE_BYTES = 512 * 1024 * 1024
_CHAT_KEYS = ("messages", "tools", "parallel_tool_calls", "functions")
_PREFERENCE_KEYS = ("input", "preferred_output", "non_preferred_output")


@dataclass(frozen=True)
class PreparedFile:
    path: Path
    name: str  # anytune-<hash>.jsonl: the same content always gets the same name
    rows: int
    tokens: int


def _openai_record(record: dict[str, Any], fmt: DataFormat, method: Method) -> dict[str, Any]:
    target = DataFormat.OPENAI_PREFERENCE if method is Method.DPO else DataFormat.CHAT
    out = convert_record(record, fmt, target)
    keep = _PREFERENCE_KEYS if target is DataFormat.OPENAI_PREFERENCE else _CHAT_KEYS
    return {k: out[k] for k in keep if k in out}


def billing_counter(model: OpenAIModel) -> TokenCounter:
    """The model's own encoding (bundled with quicktok, identical to tiktoken), or a marked estimate."""
    try:
        return get_token_counter(f"quicktok:{model.encoding}")
    except UsageError:
        return ApproxCounter()


def count_billed_tokens(ref: DatasetRef, method: Method, model: OpenAIModel) -> TokenCount:
    """Tokens OpenAI bills for one pass over `ref`: each record as it would be uploaded, counted by OpenAI's
    chat token rule with the model's encoding."""
    validator = RecordValidator(ref.path, format=ref.format, collect_stats=False)
    records = []
    for _, record in validator:
        try:
            records.append(_openai_record(record, ref.format, method))
        except ConversionError:
            continue  # refused at submit, with its line; the quote prices what can be sent
    return count_chat_rule(records, billing_counter(model))


def prepare_file(ref: DatasetRef, method: Method, model: OpenAIModel, split: str) -> PreparedFile:
    """Write `ref` as an OpenAI training file, or raise DataError naming every line OpenAI would refuse."""
    counter = billing_counter(model)
    about = "" if counter.exact else "about "
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    tokens = 0
    validator = RecordValidator(ref.path, format=ref.format, collect_stats=False)
    for line, record in validator:
        try:
            out = _openai_record(record, ref.format, method)
        except ConversionError as exc:
            problems.append(f"{ref.path}:{line}: cannot be sent to OpenAI: {exc}")
            continue
        n = count_chat_rule([out], counter).tokens
        if n > model.max_example_tokens:
            problems.append(
                f"{ref.path}:{line}: {about}{n:,} tokens; {model.id} trains on at most {model.max_example_tokens:,} "
                "per example"
            )
        tokens += n
        rows.append(out)
    if validator.report.errors:
        problems.append(
            f"{ref.path}: {validator.report.errors} invalid record(s); run `anytune validate {ref.path}`"
        )
    if split == "train" and len(rows) < MIN_EXAMPLES:
        problems.append(f"{ref.path}: {len(rows)} example(s); OpenAI needs at least {MIN_EXAMPLES}")
    if problems:
        raise DataError(
            f"{ref.path}: the {split} data does not meet OpenAI's limits ({len(problems)} problem(s)); nothing was uploaded",
            details=problems[:200],
        )
    folder = cache_dir("openai", "uploads")
    tmp = folder / f".{ref.fingerprint.removeprefix('sha256:')}-{method.value}.jsonl"
    write_jsonl_atomic(tmp, rows)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    if tmp.stat().st_size > MAX_FILE_BYTES:
        tmp.unlink()
        raise DataError(f"{ref.path}: the converted file is over OpenAI's 512 MB limit for one file")
    name = f"anytune-{digest[:32]}.jsonl"
    final = folder / name
    tmp.replace(final)
    return PreparedFile(final, name, len(rows), tokens)
