"""Streaming validation: every broken record reported with file, line, field and what to do.

`RecordValidator` reads a file once. It yields the valid records (for conversion, splits, training) while it
records every issue and gathers statistics and a fingerprint on the way. `validate_file` runs it for a
report. Issues reach an `on_issue` callback as they are found, so the CLI can print them while it reads.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from anytune.data.clean_files import file_key, keepable, kept_records, known_clean, remember_clean
from anytune.data.fingerprint import Fingerprinter
from anytune.data.formats import OPTIONAL_KEYS, REQUIRED_KEYS, DataFormat, detect_record
from anytune.data.readers import RawRecord, file_kind, parse_line, position_word, read_records
from anytune.data.records import canonical_json
from anytune.data.shared_read import read_clean
from anytune.data.stats import DataStats, StatsAccumulator
from anytune.data.tokens import ApproxCounter, TokenCounter
from anytune.errors import DataError, shorten

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal"}
)
_DETECT_WINDOW = 64  # records read ahead to decide a file's format
MAX_MESSAGE = 300  # characters of one issue's message (and of its hint)
MAX_FIELD = 100  # characters of the field it names (a key of the user's can be megabytes long)


def _cut(text: str | None, limit: int) -> str | None:
    return None if text is None else shorten(text, limit)


# what a pass that validates a file can hand each valid record to (its line, the record, the file's format,
# the record's canonical bytes), so that work needing every record rides on the one read
OnValid = Callable[[int, dict[str, Any], DataFormat, bytes], None]


@dataclass(frozen=True, slots=True)
class Issue:
    path: str
    line: int | None
    field: str | None
    message: str
    hint: str | None = None
    severity: Literal["error", "warning"] = "error"
    unit: str = "line"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        return f"{text} — {self.hint}" if self.hint else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
            "severity": self.severity,
        }


class ValidationReport(BaseModel):
    path: str
    format: DataFormat | None
    records: int = Field(0, description="records read (valid or not)")
    valid: int = 0
    errors: int = 0
    warnings: int = 0
    issues: list[dict[str, Any]] = Field(default_factory=list, description="the first `max_issues` issues")
    issues_truncated: int = 0
    stats: DataStats | None = None
    fingerprint: str | None = None

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.valid > 0


# ------------------------------------------------------------------------------ per-record checks

Problem = tuple[str | None, str, str | None, Literal["error", "warning"]]


class _Checks:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, field: str | None, message: str, hint: str | None = None) -> None:
        self.problems.append((field, message, hint, "error"))

    def warning(self, field: str | None, message: str, hint: str | None = None) -> None:
        self.problems.append((field, message, hint, "warning"))

    def text(self, record: dict[str, Any], key: str, *, required: bool = True) -> None:
        value = record.get(key)
        if value is None:
            if required:
                self.error(key, "is missing", f"add a non-empty string {key!r}")
        elif not isinstance(value, str):
            self.error(key, f"must be a string, not {_kind(value)}")
        elif required and not value.strip():
            self.error(key, "is empty")

    def messages(
        self,
        messages: Any,
        prefix: str,
        *,
        require_assistant: bool = True,
        only_assistant: bool = False,
        max_items: int | None = None,
    ) -> None:
        if not isinstance(messages, list):
            self.error(prefix, f"must be a list of messages, not {_kind(messages)}")
            return
        if not messages:
            self.error(prefix, "is empty", "give at least one message")
            return
        if max_items is not None and len(messages) > max_items:
            self.error(prefix, f"has {len(messages)} messages; at most {max_items} allowed")
        assistant_weights: list[Any] = []
        before = len(self.problems)
        for i, message in enumerate(messages):
            self._message(message, f"{prefix}[{i}]", assistant_weights, only_assistant)
        broken_message = any(p[3] == "error" for p in self.problems[before:])
        if require_assistant and not broken_message:
            if not assistant_weights:
                self.error(
                    prefix,
                    "has no assistant message, so there is nothing to learn",
                    'end the conversation with {"role": "assistant", "content": ...}',
                )
            elif all(w == 0 for w in assistant_weights):
                self.error(prefix, "every assistant message has weight 0, so there is nothing to learn")

    def _message(self, message: Any, field: str, weights: list[Any], only_assistant: bool) -> None:
        if not isinstance(message, dict):
            self.error(field, f"must be an object with role and content, not {_kind(message)}")
            return
        role = message.get("role")
        if role is None:
            self.error(f"{field}.role", "is missing", "use one of " + ", ".join(ROLES))
            return
        if role not in ROLES:
            close = difflib.get_close_matches(str(role), ROLES, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "use one of " + ", ".join(ROLES)
            self.error(f"{field}.role", f"unknown role {role!r}", hint)
            return
        if only_assistant and role != "assistant":
            self.error(f"{field}.role", f"must be 'assistant' here, not {role!r}")
        tool_calls = message.get("tool_calls")
        has_calls = role == "assistant" and bool(tool_calls or message.get("function_call"))
        content = message.get("content")
        if content is None:
            if not has_calls:
                self.error(f"{field}.content", "is missing", "give the message text as a string")
        elif isinstance(content, str):
            if not content.strip() and role in ("user", "assistant") and not has_calls:
                self.warning(f"{field}.content", "is empty")
        elif isinstance(content, list):
            self._parts(content, f"{field}.content")
        else:
            self.error(
                f"{field}.content", f"must be a string or a list of content parts, not {_kind(content)}"
            )
        if "weight" in message:
            weight = message["weight"]
            if role != "assistant":
                self.error(f"{field}.weight", "is only allowed on assistant messages")
            elif isinstance(weight, bool) or weight not in (0, 1):
                self.error(f"{field}.weight", f"must be 0 or 1, not {weight!r}")
        if role == "assistant":
            weights.append(message.get("weight", 1))
        if tool_calls is not None:
            if role != "assistant":
                self.error(f"{field}.tool_calls", "is only allowed on assistant messages")
            else:
                self._tool_calls(tool_calls, f"{field}.tool_calls")
        if role == "tool" and not message.get("tool_call_id"):
            self.warning(
                f"{field}.tool_call_id",
                "is missing on a tool message",
                "give the id of the tool call this answers",
            )
        for key in message.keys() - _MESSAGE_KEYS:
            close = difflib.get_close_matches(key, _MESSAGE_KEYS, n=1)
            self.warning(
                f"{field}.{key}", "unknown key, ignored", f"did you mean {close[0]!r}?" if close else None
            )

    def _parts(self, parts: list[Any], field: str) -> None:
        if not parts:
            self.error(field, "is an empty list of parts")
        for j, part in enumerate(parts):
            pf = f"{field}[{j}]"
            if not isinstance(part, dict) or "type" not in part:
                self.error(pf, 'must be an object with a \'type\' (e.g. {"type": "text", "text": ...})')
            elif part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    self.error(f"{pf}.text", "must be a string")
            elif part["type"] in ("image_url", "input_audio", "file", "input_image"):
                self.warning(pf, f"{part['type']} part: only providers with vision/audio fine-tuning use it")
            else:
                self.error(f"{pf}.type", f"unknown content part type {part['type']!r}", "use 'text'")

    def _tool_calls(self, calls: Any, field: str) -> None:
        if not isinstance(calls, list):
            self.error(field, f"must be a list, not {_kind(calls)}")
            return
        for k, call in enumerate(calls):
            cf = f"{field}[{k}]"
            if not isinstance(call, dict):
                self.error(cf, "must be an object")
                continue
            if call.get("type", "function") != "function":
                self.error(f"{cf}.type", f"must be 'function', not {call.get('type')!r}")
            function = call.get("function")
            if not isinstance(function, dict):
                self.error(f"{cf}.function", "is missing", 'give {"name": ..., "arguments": "{...}"}')
                continue
            if not isinstance(function.get("name"), str) or not function.get("name"):
                self.error(f"{cf}.function.name", "is missing")
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                try:
                    json.loads(arguments)
                except json.JSONDecodeError as exc:
                    self.error(f"{cf}.function.arguments", f"is not valid JSON: {exc.msg}")
            elif arguments is not None:
                self.error(
                    f"{cf}.function.arguments",
                    f"must be a JSON string, not {_kind(arguments)}",
                    "encode it with json.dumps",
                )

    def prompt_or_messages(self, record: dict[str, Any], key: str) -> None:
        value = record.get(key)
        if isinstance(value, list):
            self.messages(value, key, require_assistant=False)
        else:
            self.text(record, key)

    def answer(self, record: dict[str, Any], key: str) -> None:
        value = record.get(key)
        if isinstance(value, list):
            self.messages(value, key, only_assistant=True)
        else:
            self.text(record, key)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _check_chat(record: dict[str, Any], c: _Checks) -> None:
    c.messages(record.get("messages"), "messages")
    tools = record.get("tools")
    if tools is not None and not isinstance(tools, list):
        c.error("tools", f"must be a list of tool definitions, not {_kind(tools)}")


def _check_instruction(record: dict[str, Any], c: _Checks) -> None:
    c.text(record, "instruction")
    c.text(record, "input", required=False)
    c.text(record, "output")
    c.text(record, "system", required=False)


def _check_completion(record: dict[str, Any], c: _Checks) -> None:
    c.prompt_or_messages(record, "prompt")
    c.answer(record, "completion")


def _check_text(record: dict[str, Any], c: _Checks) -> None:
    c.text(record, "text")


def _check_preference(record: dict[str, Any], c: _Checks) -> None:
    c.prompt_or_messages(record, "prompt")
    c.answer(record, "chosen")
    c.answer(record, "rejected")
    if record.get("chosen") is not None and record.get("chosen") == record.get("rejected"):
        c.warning("rejected", "is identical to chosen, so this pair teaches nothing")


def _check_openai_preference(record: dict[str, Any], c: _Checks) -> None:
    inp = record.get("input")
    if not isinstance(inp, dict):
        c.error("input", f"must be an object with 'messages', not {_kind(inp)}")
    else:
        c.messages(inp.get("messages"), "input.messages", require_assistant=False)
    for key in ("preferred_output", "non_preferred_output"):
        c.messages(record.get(key), key, only_assistant=True, max_items=1)
    if record.get("preferred_output") is not None and record.get("preferred_output") == record.get(
        "non_preferred_output"
    ):
        c.warning("non_preferred_output", "is identical to preferred_output, so this pair teaches nothing")


CHECKS: dict[DataFormat, Callable[[dict[str, Any], _Checks], None]] = {
    DataFormat.CHAT: _check_chat,
    DataFormat.INSTRUCTION: _check_instruction,
    DataFormat.COMPLETION: _check_completion,
    DataFormat.TEXT: _check_text,
    DataFormat.PREFERENCE: _check_preference,
    DataFormat.OPENAI_PREFERENCE: _check_openai_preference,
}


def check_record(record: Any, fmt: DataFormat) -> list[Problem]:
    """The problems of one record read as `fmt` (an empty list when it is valid)."""
    c = _Checks()
    if not isinstance(record, dict):
        c.error(None, f"must be a JSON object, not {_kind(record)}")
        return c.problems
    detected = detect_record(record)
    if detected is None:
        c.error(None, _unknown_format_message(record), _key_hint(record, fmt))
        return c.problems
    if detected is not fmt:
        c.error(
            None,
            f"is a {detected.value} record, but the file is {fmt.value}",
            "keep one format per file (`anytune data convert` converts between them)",
        )
        return c.problems
    CHECKS[fmt](record, c)
    known = REQUIRED_KEYS[fmt] | OPTIONAL_KEYS[fmt]
    for key in sorted(record.keys() - known):
        c.warning(key, "unknown key, ignored")
    return c.problems


def _array_hint(value: Any) -> str | None:
    """A line that is an array of records: JSON Lines wants one record per line."""
    if isinstance(value, list) and value and all(isinstance(x, dict) for x in value[:10]):
        return (
            f"this line is one JSON array of {len(value)} records: write one record per line, e.g. "
            "`jq -c '.[]' FILE > FILE.jsonl`"
        )
    return None


def _unknown_format_message(record: dict[str, Any]) -> str:
    keys = ", ".join(sorted(record)) or "none"
    return (
        f"is in no known format (keys: {keys}); expected messages (chat), instruction+output, "
        "prompt+completion, text, prompt+chosen+rejected, or input+preferred_output+non_preferred_output"
    )


def _key_hint(record: dict[str, Any], fmt: DataFormat | None) -> str | None:
    wanted = (
        sorted(REQUIRED_KEYS[fmt]) if fmt else sorted({k for keys in REQUIRED_KEYS.values() for k in keys})
    )
    for key in record:
        close = difflib.get_close_matches(key, wanted, n=1, cutoff=0.7)
        if close and close[0] not in record:
            return f"did you mean {close[0]!r} instead of {key!r}?"
    return None


# how each kind of file holds its records: the hints for a record that cannot be read (a CSV or Parquet
# reader's own message says it), and for a file of none
_READ_HINT = {"jsonl": "each line must be one JSON object", "csv": None, "parquet": None}
_ONE_RECORD = {
    "jsonl": "a data file needs one JSON object per line",
    "csv": "a CSV file needs a header line, then one row per record",
    "parquet": "a Parquet file needs one row per record",
}


# ------------------------------------------------------------------------------------- the file pass


class RecordValidator:
    """One streaming pass over a file: valid records out, issues, stats and fingerprint on the way."""

    def __init__(
        self,
        path: str | Path,
        *,
        format: DataFormat | None = None,
        token_counter: TokenCounter | None = None,
        max_seq_length: int | None = None,
        on_issue: Callable[[Issue], None] | None = None,
        max_issues: int = 1000,
        collect_stats: bool = True,
        on_valid: OnValid | None = None,
    ) -> None:
        self.path = Path(path)
        self.on_valid = on_valid
        self.format = format
        self.counter = token_counter or ApproxCounter()
        self.max_seq_length = max_seq_length
        self.on_issue = on_issue
        self.max_issues = max_issues
        self.collect_stats = collect_stats
        self.kind = file_kind(self.path)
        self.unit = position_word(self.path)
        self.report = ValidationReport(path=str(self.path), format=format)
        self._stats: StatsAccumulator | None = None
        self._fingerprint = Fingerprinter()

    def _issue(
        self, line: int | None, field: str | None, message: str, hint: str | None, severity: str
    ) -> None:
        # a message quotes the bad value, a field or hint may name a bad key: never the whole of a huge one
        message, hint = _cut(message, MAX_MESSAGE), _cut(hint, MAX_MESSAGE)
        field = _cut(field, MAX_FIELD)
        issue = Issue(str(self.path), line, field, message, hint, severity, self.unit)  # type: ignore[arg-type]
        if severity == "error":
            self.report.errors += 1
        else:
            self.report.warnings += 1
        if len(self.report.issues) < self.max_issues:
            self.report.issues.append(issue.as_dict())
        else:
            self.report.issues_truncated += 1
        if self.on_issue is not None:
            self.on_issue(issue)

    def _decide_format(self, head: list[RawRecord]) -> DataFormat | None:
        votes = Counter(detect_record(r.value) for r in head if r.value is not None)
        votes.pop(None, None)
        return votes.most_common(1)[0][0] if votes else None

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        reread = not self.collect_stats and self.on_issue is None and self.on_valid is None
        known = known_clean(self.path, self.format) if reread else None
        if known is not None:
            yield from self._reread(known)
            return
        records = read_records(self.path)
        head: list[RawRecord] = []
        if self.format is None:
            parsed = 0  # counted as read: summing over the head for each record was quadratic in bad lines
            for raw in records:
                head.append(raw)
                parsed += raw.value is not None
                if parsed >= _DETECT_WINDOW:
                    break
            self.format = self._decide_format(head)
            self.report.format = self.format
        if self.collect_stats and self.format is not None:
            self._stats = StatsAccumulator(self.format, self.counter, self.max_seq_length)

        def all_records() -> Iterator[RawRecord]:
            yield from head
            yield from records

        kept: list[tuple[int, Any]] | None = [] if self.collect_stats and keepable(self.path) else None
        for raw in all_records():
            if raw.warning:
                self._issue(raw.line, None, raw.warning, None, "warning")
                continue
            self.report.records += 1
            if raw.error:
                self._issue(raw.line, None, raw.error, _READ_HINT[self.kind], "error")
                continue
            if self.format is None:
                self._issue(
                    raw.line,
                    None,
                    _unknown_format_message(raw.value)
                    if isinstance(raw.value, dict)
                    else f"must be a JSON object, not {_kind(raw.value)}",
                    _key_hint(raw.value, None) if isinstance(raw.value, dict) else _array_hint(raw.value),
                    "error",
                )
                continue
            problems = check_record(raw.value, self.format)
            failed = False
            for field, message, hint, severity in problems:
                self._issue(raw.line, field, message, hint, severity)
                failed = failed or severity == "error"
            if failed:
                continue
            self.report.valid += 1
            canonical = canonical_json(raw.value)
            self._fingerprint.add(raw.value, canonical)
            if self._stats is not None:
                self._stats.add(raw.line, raw.value, canonical)
            if self.on_valid is not None:
                self.on_valid(raw.line, raw.value, self.format, canonical)
            if kept is not None:
                kept.append((raw.line, raw.value))
            yield raw.line, raw.value
        if self.report.records == 0:
            self._issue(None, None, "contains no records", _ONE_RECORD[self.kind], "error")
        if self._stats is not None:
            self.report.stats = self._stats.finish()
        if self.format is not None and self.report.valid:
            self.report.fingerprint = self._fingerprint.hexdigest(self.format.value)
        if self.collect_stats and self.report.errors == 0 and self.report.format is not None:
            remember_clean(self.path, self.report, kept)

    def _reread(self, known: ValidationReport) -> Iterator[tuple[int, dict[str, Any]]]:
        """Another pass over a JSONL file this process has validated clean, unchanged since: every line
        holds a valid record, so it is only parsed (a provider's prepare after the Client's validation, a
        quote across providers). The report is the one that pass made."""
        self.format = known.format
        self.report = known.model_copy(update={"stats": None})
        key = file_key(self.path) or (str(self.path), id(self))  # (changed meanwhile: shared with none)
        kept = kept_records(key)
        if kept is not None:  # a small file's records, kept from the validation's own parse
            yield from kept
            return
        # passes over it at the same time (a quote's providers, on threads) share one parse
        yield from read_clean(self.path, key, _value_of)


def _value_of(line: bytes) -> Any:
    return parse_line(line)[0]  # no line is over the limit and each holds a record: the validation checked


def validate_file(
    path: str | Path,
    *,
    format: DataFormat | None = None,
    token_counter: TokenCounter | None = None,
    max_seq_length: int | None = None,
    on_issue: Callable[[Issue], None] | None = None,
    max_issues: int = 1000,
    on_valid: OnValid | None = None,
) -> ValidationReport:
    """Read the whole file; return the report. Never raises for bad records: they are in the report.
    `on_valid(line, record, format, canonical bytes)` sees each valid record (what else needs one pass)."""
    validator = RecordValidator(
        path,
        format=format,
        token_counter=token_counter,
        max_seq_length=max_seq_length,
        on_issue=on_issue,
        max_issues=max_issues,
        on_valid=on_valid,
    )
    for _ in validator:
        pass
    return validator.report


def iter_valid_records(
    path: str | Path, *, format: DataFormat | None = None
) -> tuple[RecordValidator, Iterator[tuple[int, dict[str, Any]]]]:
    validator = RecordValidator(path, format=format, collect_stats=False)
    return validator, iter(validator)


def require_valid(report: ValidationReport, *, what: str = "the data") -> None:
    """Raise a DataError naming every error of a report (up to the report's cap)."""
    if report.ok:
        return
    errors = [i for i in report.issues if i["severity"] == "error"]
    details = [str(Issue(**{k: v for k, v in i.items()})) for i in errors]
    more = report.errors - len(details)
    if more > 0:
        details.append(f"... and {more} more")
    raise DataError(
        f"{report.path}: {what} has {report.errors} error{'s' if report.errors != 1 else ''}"
        + ("" if report.valid else " and no valid records"),
        details=details,
        hint=f"run `anytune validate {report.path}` for the full report",
    )
