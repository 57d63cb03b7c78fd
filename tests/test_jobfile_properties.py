"""Generated job files, hostile and plain, through `load_job_file` and the capability check `anytune run`
makes before anything else: a JobSpec or one SpecError that names the file and a line or field, never a
traceback, in bounded time and memory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from anytune.errors import AnytuneError
from anytune.jobfile import load_job_file
from anytune.pipeline.capabilities import check_spec
from tests.conftest import examples

FIELDS = [
    "name",
    "base_model",
    "method",
    "adapter",
    "hyperparameters",
    "data",
    "evaluation",
    "budget_usd",
    "provider",
    "provider_options",
    "tags",
    "suffix",
    "strict",
    "epochs",
    "learning_rate",
    "batch_size",
    "train",
    "type",
    "r",
    "metrics",
    "local",
    "openai",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["sft", "lora", "tiny", "local", "1e-4", "3", "auto", "", "\ud7ff", "http://x/y"]),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=12))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=40,
)


@st.composite
def alias_bombs(draw: st.DrawFn) -> str:
    fan, depth = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    lines = [f"l0: &l0 [{', '.join(['x'] * fan)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]" for i in range(1, depth)]
    where = draw(st.sampled_from(["", "provider_options:\n  local:\n    junk: *l{top}\n", "tags: *l{top}\n"]))
    return (
        "base_model: tiny\ndata: {train: t.jsonl}\n" + "\n".join(lines) + "\n" + where.format(top=depth - 1)
    )


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    n = draw(st.integers(1, 4000))
    opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
    return "base_model: tiny\ndata: {train: t.jsonl}\ntags: " + opener * n + "1" + closer * n + "\n"


@st.composite
def mapped_documents(draw: st.DrawFn) -> str:
    doc: Any = draw(documents)
    if draw(st.booleans()):  # often close to a real job, so that validation (not parsing) is exercised
        base = {"base_model": "tiny", "data": {"train": "t.jsonl"}}
        doc = {**base, **doc} if isinstance(doc, dict) else base | {"tags": doc}
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        return "x: 1\n"


job_texts = st.one_of(mapped_documents(), alias_bombs(), deep_nesting(), st.text(max_size=200))
NAMED = re.compile(r":\d+: |: [A-Za-z_][\w.]*: |:\d+\b")


@pytest.fixture(scope="module")
def local_caps():  # type: ignore[no-untyped-def]
    from anytune.plugins import PluginManager

    return PluginManager().get_backend("local").capabilities()


_BASELINE_KB = 0


def _peak_kb() -> int:
    """This process's peak resident memory (VmHWM), in KiB."""
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]


def _outcome(path: Path, caps: Any) -> AnytuneError | None:
    """None when the file is a job (checked as `anytune run` checks it next); the error otherwise. Anything
    but an AnytuneError escapes and fails the property."""
    try:
        spec = load_job_file(path)
        check_spec(spec, caps, spec.provider)
    except AnytuneError as exc:
        return exc
    return None


@settings(
    max_examples=examples(200),
    deadline=5000,  # per example: generous, for a busy CI machine; typical cases take milliseconds
    database=None,  # nothing written into the working tree
    phases=[Phase.explicit, Phase.generate],  # a failure is reported as found, without minutes of shrinking
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=job_texts)
def test_any_job_file_gives_a_spec_or_one_clear_error(text, tmp_path, local_caps):
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    error = _outcome(path, local_caps)
    if error is not None:
        lines = [error.message, *error.details] if error.details else [error.message]
        assert all(line.startswith(str(path)) for line in lines), lines
        named = any(NAMED.search(line.removeprefix(str(path))) for line in lines)
        assert named or "not valid" in error.message, lines
    # the process's peak only grows: had any example unfolded an alias bomb (gigabytes), it would show here
    global _BASELINE_KB
    _BASELINE_KB = _BASELINE_KB or _peak_kb()
    assert _peak_kb() - _BASELINE_KB < 512 * 1024
