"""Generated data files, hostile and plain, through `validate` and `quote`: a report (or one DataError) that
names a line for every error, never an exception that reaches the user as "internal error", in bounded time
and memory. Every case of the hostile-input list is among the strategies: broken JSON, nesting 100k deep,
integers of 5,000 digits, lone surrogates, bytes that are not UTF-8, huge values echoed in messages, lines
over the length limit, blank lines, a BOM, CRLF, NUL bytes, non-object values, random records; CSV with bad
bytes and ragged rows."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anytune.client import quote
from anytune.data import readers
from anytune.data.validate import MAX_MESSAGE, validate_file
from anytune.spec import JobSpec
from tests.conftest import examples

GOOD = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
}
ROLES = ["system", "user", "assistant", "tool", "usr", "", "x" * 5000]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(ROLES)},
        optional={
            "content": st.one_of(st.text(max_size=40), json_values),
            "weight": json_values,
            "tool_calls": json_values,
            "name": st.text(max_size=10),
        },
    ),
    max_size=5,
)
records = st.one_of(
    st.just(GOOD),
    st.builds(lambda m: {"messages": m}, messages),
    st.builds(
        lambda m, extra: {"messages": m, **extra},
        messages,
        st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    ),
    st.dictionaries(
        st.sampled_from(["prompt", "completion", "chosen", "rejected", "text", "instruction", "output"]),
        json_values,
        max_size=4,
    ),
    json_values,
)


def _line(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


hostile_lines = st.one_of(
    st.builds(_line, records),
    st.sampled_from(
        [
            b"{bad}",
            b'{"messages": [',
            b"[" * 100_000 + b"]" * 100_000,
            b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            b'{"n": ' + b"9" * 5000 + b"}",
            b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
            b'{"messages": [{"role": "\xff\xfe", "content": "x"}]}',
            b'{"messages": [{"role": "' + b"r" * 200_000 + b'", "content": "x"}]}',
            b'{"a": NaN, "b": Infinity}',
            b"\x00\x00",
            b"",
            b"   ",
            b"null",
            b'"just a string"',
            b"x" * 3000,  # over the (lowered) line limit: one error, not read whole
            _line(GOOD),
        ]
    ),
    st.binary(max_size=60),
)


@st.composite
def jsonl_files(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(hostile_lines, max_size=25))
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    body = newline.join(line.replace(b"\n", b" ").replace(b"\r", b" ") for line in lines)
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + body


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from([b"prompt,completion", b"messages", b"text", b"a,b,c"]))
    rows = draw(
        st.lists(
            st.one_of(
                st.sampled_from(
                    [b"hello,world", b'"unterminated', b"\xff\xfe,x", b"a,b,c,d", b"", b'"[{""role"": 1}]"']
                ),
                st.binary(max_size=30).map(lambda b: b.replace(b"\n", b" ")),
            ),
            max_size=15,
        )
    )
    return b"\n".join([header, *rows])


def _check_report(path: Path) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        report = validate_file(path)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < 20, f"validate took {seconds:.1f} s on a file of {path.stat().st_size:,} bytes"
    assert peak < 64 * 2**20, f"validate peaked at {peak / 2**20:.0f} MB"
    for issue in report.issues:
        assert len(issue["message"]) <= MAX_MESSAGE, issue["message"][:80]
        if issue["severity"] == "error" and issue["line"] is None:
            assert issue["message"] == "contains no records"
    listed = sum(1 for i in report.issues if i["severity"] == "error")
    assert listed == report.errors or report.issues_truncated  # every error counted is listed, up to the cap


SETTINGS = settings(
    max_examples=examples(700),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    database=None,
)


@SETTINGS
@given(data=jsonl_files())
def test_validate_names_a_line_for_every_error_in_any_jsonl_file(
    data: bytes, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 2048)
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    _check_report(path)


@settings(SETTINGS, max_examples=examples(300))
@given(data=csv_files())
def test_validate_names_a_line_for_every_error_in_any_csv_file(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(data)
    _check_report(path)


@settings(SETTINGS, max_examples=examples(40))
@given(data=jsonl_files())
def test_quote_refuses_bad_data_with_lines_and_never_crashes(
    data: bytes, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 2048)
    path = tmp_path / "train.jsonl"
    path.write_bytes(data)
    spec = JobSpec.model_validate(
        {
            "name": "prop",
            "base_model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
            "provider_options": {"openai": {"base_model": "gpt-4o-mini"}, "local": {"base_model": "tiny"}},
            "data": {"train": str(path)},
        }
    )
    report = validate_file(path)
    started = time.perf_counter()
    table = quote(spec, providers=["openai", "together", "local"])  # raises nothing: a row says why
    assert time.perf_counter() - started < 60
    assert {row.provider for row in table.quotes} == {"openai", "together", "local"}
    for row in table.quotes:
        if not report.ok:  # refused with the file and the first lines named
            assert not row.available and row.reason
            assert f"{path}" in row.reason and (report.valid == 0 or f"{path}:" in row.reason), row.reason
        else:
            assert row.available or row.reason


# Records anytune's validator accepts, of every format, with what is legal but unusual in them: special-token
# and template text in contents, content parts, tool calls with and without content, weights, names, tool
# messages, prompts and answers as strings or as messages. What a provider cannot take must be a refusal that
# names it, never an exception from its conversion or its counting.
texts = st.one_of(
    st.text(min_size=1, max_size=30).filter(str.strip),
    st.sampled_from(
        [
            "<|eot_id|>",
            "<|im_end|>",
            "<think>a</think>b",
            "{{ x }}{% if %}",
            "a\u2028b",
            "a\x00b",
            "x" * 3000,
            "<|start_header_id|>user<|end_header_id|>",
            "😀 é",
            "a\r\nb",
            "  lead",
            "trail  ",
        ]
    ),
)
content_values = st.one_of(
    texts,
    st.lists(
        st.one_of(
            st.builds(lambda t: {"type": "text", "text": t}, texts),
            st.just({"type": "image_url", "image_url": {"url": "http://x/y.png"}}),
        ),
        min_size=1,
        max_size=3,
    ),
)
tool_calls = st.lists(
    st.builds(
        lambda name, args: {"id": "c1", "type": "function", "function": {"name": name, "arguments": args}},
        st.sampled_from(["f", "get_weather"]),
        st.sampled_from(["{}", '{"a": 1}', "[]"]),
    ),
    min_size=1,
    max_size=2,
)


def _valid_message(role: str) -> st.SearchStrategy[dict[str, Any]]:
    optional: dict[str, Any] = {"name": st.sampled_from(["bob", "x y"])}
    if role == "assistant":
        optional["weight"] = st.sampled_from([0, 1])
    if role == "tool":
        optional["tool_call_id"] = st.just("c1")
    plain = st.fixed_dictionaries({"role": st.just(role), "content": content_values}, optional=optional)
    if role != "assistant":
        return plain
    calling = st.builds(
        lambda content, calls: {"role": "assistant", "tool_calls": calls, **content},
        st.sampled_from([{}, {"content": None}, {"content": ""}, {"content": "calling"}]),
        tool_calls,
    )
    return st.one_of(plain, calling)


def _last_answer() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"role": st.just("assistant"), "content": texts})


any_message = st.one_of(*(_valid_message(r) for r in ("system", "user", "assistant", "tool")))
prompt_messages = st.lists(
    st.one_of(*(_valid_message(r) for r in ("system", "user", "assistant"))), min_size=1, max_size=3
)
answers = st.one_of(texts, st.lists(_last_answer(), min_size=1, max_size=2))
valid_records = {
    "chat": st.builds(
        lambda ms, last, tools: {"messages": [*ms, last], **tools},
        st.lists(any_message, max_size=5),
        st.one_of(_last_answer(), _valid_message("assistant")),
        st.sampled_from([{}, {"tools": [{"type": "function", "function": {"name": "f"}}]}]),
    ),
    "instruction": st.fixed_dictionaries(
        {"instruction": texts, "output": texts}, optional={"input": st.text(max_size=10), "system": texts}
    ),
    "completion": st.fixed_dictionaries({"prompt": st.one_of(texts, prompt_messages), "completion": answers}),
    "preference": st.fixed_dictionaries(
        {"prompt": st.one_of(texts, prompt_messages), "chosen": answers, "rejected": answers}
    ),
    "openai_preference": st.builds(
        lambda prompt, a, b: {
            "input": {"messages": prompt},
            "preferred_output": [a],
            "non_preferred_output": [b],
        },
        prompt_messages,
        _last_answer(),
        _last_answer(),
    ),
    "text": st.fixed_dictionaries({"text": texts}),
}


@settings(SETTINGS, max_examples=examples(120))
@given(
    kind=st.sampled_from(sorted(valid_records)),
    data=st.data(),
    base=st.sampled_from(["meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", "Qwen/Qwen2.5-7B-Instruct"]),
    bedrock=st.sampled_from(["nova-micro", "llama3-1-8b-instruct"]),
)
def test_valid_records_of_every_format_reach_every_provider_without_a_crash(
    kind: str, data: st.DataObject, base: str, bedrock: str, tmp_path: Path
) -> None:
    from anytune.client import Client
    from anytune.errors import AnytuneError

    records = data.draw(st.lists(valid_records[kind], min_size=1, max_size=12))
    method = data.draw(st.sampled_from(["sft", "cpt"] if kind == "text" else ["sft", "dpo"]))
    path = tmp_path / f"{kind}-{time.perf_counter_ns()}.jsonl"  # a new file each time: no report is reused
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    if not validate_file(path).ok:
        return  # an empty answer, a pair whose answers are equal: the tests above cover refusals
    client = Client()
    options = {
        "openai": {"base_model": "gpt-4o-mini"},
        "azure-openai": {"base_model": "gpt-4o"},
        "bedrock": {"base_model": bedrock},
        "local": {"base_model": "tiny"},
    }
    reasons: list[str] = []
    for provider in client.plugins.backend_names():
        spec = JobSpec.model_validate(
            {
                "name": "prop",
                "base_model": base,
                "method": method,
                "provider": provider,
                "provider_options": options,
                "data": {"train": str(path)},
            }
        )
        try:
            pre = client.preflight(spec, quote_only=True)
        except AnytuneError as exc:  # refused before its data was prepared: it says why
            reasons.append(exc.message)
            continue
        quote = pre.quote
        assert quote.available or quote.reason, (provider, kind)
        for problem in pre.prepared.problems:  # every problem of the data names its file
            assert problem.file in (str(path), str(path.resolve())), (provider, problem)
        if quote.available:
            assert quote.billable_tokens and quote.billable_tokens > 0, (provider, kind, quote)
    assert all(reasons)


def test_a_chat_with_no_text_to_train_on_is_refused_by_bedrock_with_its_line(tmp_path: Path) -> None:
    """Found by the property test above on a random day: a user turn that is only an image and an answer that
    is only tool calls made a Bedrock Llama row "available" with 0 billable tokens."""
    from anytune.client import Client

    image = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    call = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    record = {"messages": [{"role": "user", "content": image}, {"role": "assistant", "tool_calls": call}]}
    path = tmp_path / "no-text.jsonl"
    path.write_text(json.dumps(record) + "\n")
    client = Client()
    for model in ("llama3-1-8b-instruct", "nova-micro"):
        spec = JobSpec.model_validate(
            {
                "base_model": "m",
                "provider": "bedrock",
                "provider_options": {"bedrock": {"base_model": model}},
                "data": {"train": str(path)},
            }
        )
        pre = client.preflight(spec, quote_only=True)
        assert not pre.quote.available and pre.quote.billable_tokens is None, (model, pre.quote)
        assert any(p.line == 1 and "no text" in p.message for p in pre.prepared.errors), pre.prepared.problems


def test_the_strategies_reach_every_hostile_case() -> None:
    """Each hostile case drawn above (deep nesting, 5,000 digits, a surrogate, broken JSON,
    bad bytes) gives the error it should, not an exception; the file-level checks are the tests above."""
    cases = {
        b"[" * 100_000 + b"]" * 100_000: "nested too deeply",
        b'{"n": ' + b"9" * 5000 + b"}": "not a number anytune reads",
        b'{"messages": [{"role": "user", "content": "\\ud800"}]}': "surrogate",
        b'{"messages": [{"role": "\xff\xfe", "content": "x"}]}': "not valid UTF-8",
        b"{bad}": "not valid JSON",
    }
    for raw, expected in cases.items():
        _, error = readers.parse_line(raw)
        assert error is not None and expected in error, (raw[:40], error)


@pytest.fixture(autouse=True)
def _quiet_plugins(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
