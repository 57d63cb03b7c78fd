"""The cost layer: the catalog and its overrides, billable tokens counted the way each provider bills them,
hour-priced quotes from the throughput model and from measured runs, comparisons, budgets, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from anytune.client import Client, quote
from anytune.cost.billing import OPENAI_REPLY_PRIMING, OPENAI_TOKENS_PER_MESSAGE
from anytune.cost.catalog import load_catalog
from anytune.cost.quotes import STARTUP_S
from anytune.cost.throughput import record_measurement
from anytune.errors import SpecError
from anytune.jobfile import spec_from_dict
from anytune.spec import JobSpec
from tests.conftest import cli_env, job_yaml, preference_rows, reversal_rows, run_anytune, write_jsonl

quicktok = pytest.importorskip("quicktok")

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


@pytest.fixture(autouse=True)
def _pinned_day(monkeypatch: pytest.MonkeyPatch) -> None:
    # availability windows (OpenAI stops taking jobs on 2027-01-06) are judged as of this day
    monkeypatch.setenv("ANYTUNE_TODAY", "2026-11-28")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)


def chat_rows(n: int) -> list[dict[str, Any]]:
    """Reversal chats with a system message, a name and non-ASCII text: what counting rules must get right."""
    rows = reversal_rows(n, seed=5)
    for i, row in enumerate(rows):
        row["messages"].insert(0, {"role": "system", "content": "Réponds brièvement. 答えは短く。"})
        if i % 3 == 0:
            row["messages"][1]["name"] = "alice"
    return rows


def spec(train: Path, **extra: Any) -> JobSpec:
    return spec_from_dict(
        {
            "name": "costly",
            "base_model": LLAMA,
            "provider_options": {"openai": {"base_model": "gpt-4o-mini"}},
            "data": {"train": str(train)},
            "hyperparameters": {"epochs": 2},
            **extra,
        }
    )


def by_label(table) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {q.label: q for q in table.quotes}


# ------------------------------------------------------------------------------------------- catalog


def test_every_builtin_price_has_a_source_and_a_date():
    catalog = load_catalog()
    assert catalog.entries
    for entry in catalog.entries:
        source, seen = catalog.source_of(entry)
        assert source and seen is not None, entry


def test_most_specific_entry_wins_and_an_override_file_beats_the_builtin(tmp_path: Path):
    catalog = load_catalog()
    tier = catalog.price("together", method="sft", adapter="lora", params_b=8)
    assert tier is not None and tier.price == 0.48
    assert catalog.price("together", method="dpo", adapter="full", params_b=70.6).price == 8.00  # type: ignore[union-attr]
    assert catalog.price("together", method="sft", adapter="lora", params_b=400) is None  # no tier: no guess
    override = tmp_path / "mine.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "prices": [
                    {
                        "provider": "together",
                        "params_b": [0, 16],
                        "unit": "1m_tokens",
                        "price": 0.30,
                        "source": "our contract",
                        "seen": "2026-11-01",
                    },
                    {
                        "provider": "local",
                        "hardware": "a100",
                        "unit": "hour",
                        "price": 0.90,
                        "source": "our cluster",
                        "seen": "2026-11-02",
                    },
                ]
            }
        )
    )
    mine = load_catalog([override])
    negotiated = mine.price("together", method="sft", adapter="lora", params_b=8)
    assert negotiated is not None and negotiated.price == 0.30 and negotiated.origin == str(override)
    assert mine.source_of(negotiated) == ("our contract", negotiated.seen)
    assert mine.price("local", hardware="a100").price == 0.90  # type: ignore[union-attr]
    assert mine.price("local", hardware="h200").price == 5.00  # type: ignore[union-attr]  # the rest stays


def test_a_bad_override_file_names_the_line_and_field(tmp_path: Path):
    bad = tmp_path / "prices.yaml"
    bad.write_text("prices:\n  - provider: local\n    hardware: a100\n    unit: hour\n    price: -3\n")
    with pytest.raises(SpecError) as info:
        load_catalog([bad])
    assert any(f"{bad}:5: prices.0.price" in d for d in info.value.details), info.value.details


def test_home_override_file_is_read_without_being_named(anytune_home: Path):
    anytune_home.mkdir(parents=True, exist_ok=True)
    (anytune_home / "prices.yaml").write_text(
        "prices:\n  - {provider: openai, model: gpt-4o-mini-2024-07-18, unit: 1m_tokens, price: 1.0, "
        "source: negotiated, seen: 2026-11-20}\n"
    )
    assert load_catalog().price("openai", model="gpt-4o-mini-2024-07-18").price == 1.0  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ billable token counts


def openai_rule(rows: list[dict[str, Any]], encoding: str) -> int:
    """OpenAI's published rule, computed independently with the encoding itself."""
    enc = quicktok.get_encoding(encoding)
    total = 0
    for row in rows:
        for m in row["messages"]:
            total += OPENAI_TOKENS_PER_MESSAGE + len(enc.encode(m["role"])) + len(enc.encode(m["content"]))
            if m.get("name"):
                total += 1 + len(enc.encode(m["name"]))
        total += OPENAI_REPLY_PRIMING
    return total


def test_openai_tokens_are_the_models_encoding_over_the_billed_chat(tmp_path: Path):
    rows = chat_rows(40)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    table = quote(spec(train), ["openai"])
    [q] = table.quotes
    assert q.available and not q.tokens_estimated and q.token_counter == "quicktok:o200k_base"
    assert q.billable_tokens == 2 * openai_rule(rows, "o200k_base")  # x 2 epochs
    assert q.price == pytest.approx(q.billable_tokens * 3.00 / 1e6)
    assert q.price_date is not None and q.price_source and "openai.com" in q.price_source
    # gpt-3.5-turbo bills with cl100k_base: a different count for the same text
    old = quote(spec(train, provider_options={"openai": {"base_model": "gpt-3.5-turbo"}}), ["openai"])
    assert old.quotes[0].available is False and "retired on 2026-10-23" in (old.quotes[0].reason or "")


def test_openai_cl100k_model_counts_with_cl100k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANYTUNE_TODAY", "2026-09-01")  # before gpt-3.5-turbo retired
    rows = chat_rows(20)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    [q] = quote(spec(train, provider_options={"openai": {"base_model": "gpt-3.5-turbo"}}), ["openai"]).quotes
    assert q.token_counter == "quicktok:cl100k_base"
    assert q.billable_tokens == 2 * openai_rule(rows, "cl100k_base") != 2 * openai_rule(rows, "o200k_base")


def llama3_text(messages: list[dict[str, Any]]) -> str:
    return "<|begin_of_text|>" + "".join(
        f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>" for m in messages
    )


def test_together_tokens_are_the_llama3_tokenizer_over_its_chat_template(tmp_path: Path):
    rows = chat_rows(30)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    validation = write_jsonl(tmp_path / "val.jsonl", chat_rows(6))
    [q] = quote(spec(train, data={"train": str(train), "validation": str(validation)}), ["together"]).quotes
    enc = quicktok.get_encoding("llama3")
    per_pass = sum(len(enc.encode_with_special(llama3_text(r["messages"]))) for r in rows)
    val = sum(len(enc.encode_with_special(llama3_text(r["messages"]))) for r in chat_rows(6))
    # tokens processed = epochs x training tokens + evaluations (10 by default) x validation tokens
    assert q.billable_tokens == 2 * per_pass + 10 * val
    assert q.token_counter == "quicktok:llama3" and not q.tokens_estimated
    assert q.price == pytest.approx(q.billable_tokens * 0.48 / 1e6)
    assert q.eta_seconds and q.eta_seconds > 600  # overhead + modelled H100 time


def test_together_dpo_counts_the_prompt_with_each_answer_at_the_dpo_price(tmp_path: Path):
    rows = preference_rows(12)
    train = write_jsonl(tmp_path / "pref.jsonl", rows)
    qwen = "Qwen/Qwen2.5-7B-Instruct"
    [q] = quote(
        spec(train, base_model=qwen, method="dpo", hyperparameters={"epochs": 1}), ["together"]
    ).quotes
    enc = quicktok.get_encoding("qwen3")

    def chatml(messages: list[dict[str, str]]) -> str:
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)

    expected = 0
    for r in rows:
        prompt = [{"role": "user", "content": r["prompt"]}]
        for answer in (r["chosen"], r["rejected"]):
            expected += len(
                enc.encode_with_special(chatml([*prompt, {"role": "assistant", "content": answer}]))
            )
    assert q.billable_tokens == expected and q.token_counter == "quicktok:qwen3"
    assert q.unit_price == 1.20  # DPO LoRA, up to 16B


def test_local_tokens_are_the_models_own_tokenizer_over_its_chat_template(tmp_path: Path, tiny_model: Path):
    from transformers import AutoTokenizer

    rows = chat_rows(25)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    [q] = quote(spec(train, base_model=str(tiny_model), hyperparameters={"epochs": 3}), ["local"]).quotes
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    per_pass = sum(
        len(
            tok(tok.apply_chat_template(r["messages"], tokenize=False), add_special_tokens=False)["input_ids"]
        )
        for r in rows
    )
    assert q.billable_tokens == 3 * per_pass and not q.tokens_estimated
    assert q.hardware == "cpu" and q.unit == "hour" and q.price is not None and q.eta_seconds
    assert any("throughput model" in a for a in q.assumptions)


def test_unknown_tokenizer_is_an_estimate_and_says_so(tmp_path: Path):
    rows = chat_rows(20)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    mistral = "mistralai/Mistral-7B-Instruct-v0.3"
    [q] = quote(spec(train, base_model=mistral), ["together"]).quotes
    assert q.tokens_estimated and q.token_counter and q.token_counter.startswith("approx")
    assert any("estimate" in a for a in q.assumptions)
    # about 4 characters a token of the ChatML rendering, per example
    chatml = [
        "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in r["messages"]) for r in rows
    ]
    assert q.billable_tokens == 2 * sum(math.ceil(len(text) / 4) for text in chatml)
    assert q.price is not None  # 7B read from the name: priced in the up-to-16B tier


# --------------------------------------------------------------------------------- hour-priced quotes


def test_measured_runs_replace_the_throughput_model(tmp_path: Path, tiny_model: Path):
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(25))
    job = spec(train, base_model=str(tiny_model), hyperparameters={"epochs": 1})
    [modelled] = quote(job, ["local"]).quotes
    record_measurement(
        provider="local", hardware="cpu", model=str(tiny_model), adapter="lora", tokens=5000, seconds=10
    )
    record_measurement(
        provider="local", hardware="cpu", model=str(tiny_model), adapter="lora", tokens=3000, seconds=10
    )
    [measured] = quote(job, ["local"]).quotes
    assert any("measured" in a for a in measured.assumptions)
    # start-up, then the tokens at the median of 500 and 300 tokens/s
    assert measured.eta_seconds == pytest.approx(STARTUP_S + measured.billable_tokens / 400)
    assert measured.eta_seconds != modelled.eta_seconds


def test_hardware_too_small_is_refused_with_the_memory_it_needs(tmp_path: Path):
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(20))
    table = quote(
        spec(train, base_model="meta-llama/Llama-3.1-70B-Instruct"),
        ["local", "hf"],
        hardware="t4,a100x8",
    )
    rows = by_label(table)
    assert not rows["local (t4)"].available and "GB per GPU" in (rows["local (t4)"].reason or "")
    assert rows["hf (a100x8)"].available and rows["hf (a100x8)"].price
    assert "no hourly local price for a100x8" in " ".join(rows["local (a100x8)"].assumptions)


def test_rental_service_quotes_the_cheapest_machine_that_fits(tmp_path: Path):
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(20))
    job = spec(train)
    every = [q for q in quote(job, ["hf"], hardware="all").quotes if q.available and q.price is not None]
    [best] = quote(job, ["hf"]).quotes
    assert best.price == min(q.price for q in every) and best.hardware is not None


# --------------------------------------------------------------------------- comparisons and budgets


def test_all_providers_in_one_table_sorted_by_price_with_reasons(tmp_path: Path):
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(30))
    small = {
        "openai": {"base_model": "gpt-4o-mini"},
        "azure-openai": {"base_model": "gpt-4o-mini"},
        "local": {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        "bedrock": {"base_model": "meta.llama3-1-8b-instruct-v1:0:128k"},
        "tinker": {"base_model": "Qwen/Qwen3-8B"},  # the one model with a Tinker price in the catalog
    }
    table = quote(spec(train, provider_options=small), "all")
    rows = by_label(table)
    assert {"openai", "azure-openai", "together", "local (cpu)"} < set(rows)
    assert any(r.startswith("hf (") for r in rows)
    assert [r.unit for r in rows["azure-openai"].recurring] == ["hour"]  # hosting, apart from training
    priced = [q.price for q in table.quotes]
    assert None not in priced and priced == sorted(priced)  # type: ignore[type-var]
    assert table.cheapest() is table.quotes[0]
    # no API keys are set: that blocks a submit, not a quote
    assert rows["openai"].available and any("OPENAI_API_KEY" in w for w in table.warnings)
    # a spec a provider cannot run: it says why instead of giving a number, and goes to the bottom
    prefix = by_label(quote(spec(train, adapter="prefix"), ["together", "openai"]))
    assert not prefix["together"].available
    assert prefix["together"].reason == (
        "adapter: together cannot train adapter 'prefix'; it can train: full, lora; providers that can: hf, local"
    )


def test_a_quote_writes_no_provider_files_and_counts_what_a_submit_would_write(
    tmp_path: Path, anytune_home: Path
):
    """A comparison runs each provider's checks and counts but writes none of their files: the cache stays
    empty, and every figure equals what the same preparation reports when it writes the file."""
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(40))
    job = spec(train, provider_options={"openai": {"base_model": "gpt-4o-mini"}})
    table = quote(job, ["openai", "together", "fireworks"])
    assert all(q.available for q in table.quotes)
    assert not [p for p in anytune_home.rglob("*") if p.is_file() and p.suffix == ".jsonl"]
    client = Client()
    for provider in ("openai", "together", "fireworks"):
        mine = job.model_copy(update={"provider": provider})
        measured = client.preflight(mine, quote_only=True).prepared
        written = client.backend(provider).prepare(mine, measured.data)  # as a submit prepares it
        assert measured.tokens == written.tokens
        [(split, file)] = written.files.items()
        assert Path(file.path).is_file() and file.size == Path(file.path).stat().st_size
        assert measured.files[split].model_dump(include={"rows", "size", "format"}) == file.model_dump(
            include={"rows", "size", "format"}
        )
        assert measured.missing_files() == [""]  # never taken for an upload


def test_the_local_rows_quoted_in_a_second_process_equal_the_ones_quoted_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With `processes=2` the local backend's rows (the local machine, rental services priced through it)
    are quoted by `python -m anytune.workflows.quote_child`; the table is the one a single process makes,
    row for row and in the same order, with the extra price file honoured there too."""
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(30))
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "prices:\n  - {provider: local, hardware: l4, unit: hour, price: 9.5}\n"
        "sources:\n  local: {source: my own power bill, seen: 2026-12-01}\n"
    )
    job = spec(train)
    one = quote(job, "all", hardware="all", prices=[prices], processes=1)
    from anytune.workflows import compare

    here = compare._Quoter.row

    def not_local(self, target):  # type: ignore[no-untyped-def]
        assert (target.backend or target.provider) != "local", "quoted in this process"
        return here(self, target)

    monkeypatch.setattr(
        compare._Quoter, "row", not_local
    )  # this process only: the second one is as installed
    two = quote(job, "all", hardware="all", prices=[prices], processes=2)
    dump = [q.model_dump() for q in one.quotes]
    assert [q.model_dump() for q in two.quotes] == dump
    assert one.warnings == two.warnings
    local = [q for q in two.quotes if q.provider == "local"]
    assert any(q.hardware == "l4" and q.unit_price == 9.5 for q in local)  # the price file, there too
    assert len({q.provider for q in two.quotes}) > 3  # every other provider quoted here, beside it


def test_a_second_process_adopts_the_validation_made_here_unless_the_file_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The first process of a quote validates the job's files once and hands their reports to the second (as
    JSON): a client that adopts them validates nothing and quotes the same; a report with errors refuses the
    same way; a file changed since the hand-over is validated again."""
    from anytune.errors import DataError
    from anytune.pipeline import datachecks

    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(30))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(train.read_text() + '{"messages": "not a list"}\n')
    first = Client()
    jobs = {
        name: spec(path).model_copy(update={"provider": "local"})
        for name, path in (("good", train), ("bad", bad))
    }
    for job in jobs.values():
        first.pipeline.data.validate_spec(job)
    known = json.loads(json.dumps(first.pipeline.data.known()))
    assert len(known) == 2
    validated: list[Any] = []
    real = datachecks.validate_file
    monkeypatch.setattr(datachecks, "validate_file", lambda *a, **k: validated.append(a) or real(*a, **k))

    second = Client()
    second.pipeline.data.adopt(known)
    here = first.preflight(jobs["good"], quote_only=True)
    there = second.preflight(jobs["good"], quote_only=True)
    assert there.quote.model_dump() == here.quote.model_dump() and there.warnings == here.warnings
    with pytest.raises(DataError) as refused_here:
        first.preflight(jobs["bad"], quote_only=True)
    with pytest.raises(DataError) as refused_there:
        second.preflight(jobs["bad"], quote_only=True)
    said_here, said_there = refused_here.value, refused_there.value
    assert (said_there.message, said_there.details) == (said_here.message, said_here.details)
    assert any("31" in d and "must be a list of messages" in d for d in said_there.details)
    assert validated == []  # neither file read again for its checks

    write_jsonl(train, chat_rows(31))  # changed after the hand-over
    third = Client()
    third.pipeline.data.adopt(known)
    changed = third.preflight(jobs["good"], quote_only=True)
    assert len(validated) == 1 and changed.prepared.data.train.rows == 31


def test_a_second_process_that_fails_leaves_its_rows_to_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The second process exits 1 at once: this one quotes the local rows itself, the same table, and the
    answer file the second process was to write is gone."""
    import sys
    import tempfile

    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(20))
    job = spec(train)
    alone = quote(job, "all", processes=1)
    answers = set(Path(tempfile.gettempdir()).glob("anytune-quote-*.json"))
    for broken in ("/bin/false", str(tmp_path / "no-such-python")):  # exits 1 at once; cannot start
        monkeypatch.setattr(sys, "executable", broken)
        failed = quote(job, "all", processes=2)
        assert [q.model_dump() for q in failed.quotes] == [q.model_dump() for q in alone.quotes]
        assert any(q.provider == "local" and q.available for q in failed.quotes)
        assert set(Path(tempfile.gettempdir()).glob("anytune-quote-*.json")) == answers


def test_over_budget_quote_is_marked_and_the_job_refused_before_upload(tmp_path: Path, monkeypatch):
    from anytune.errors import BudgetExceededError
    from anytune.testing.clock import ManualClock
    from anytune.testing.server import EmulatorServer
    from anytune_openai.emulator import OpenAIEmulator

    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(30))
    job = spec(train, provider="openai", budget_usd=0.0005)
    table = quote(job, ["openai"])
    assert table.over_budget(table.quotes[0]) and table.cheapest() is None
    emu = OpenAIEmulator(api_key="sk-test", clock=ManualClock(tick=3.0))
    with EmulatorServer(emu.app) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        client = Client()
        with pytest.raises(BudgetExceededError, match=r"above budget_usd 0\.00"):
            client.submit(job)
        assert emu.recorder.count("POST", "/v1/files") == 0 and not emu.files and not emu.jobs
        assert client.registry.list_jobs() == []


# ---------------------------------------------------------------------------------------------- CLI


def test_quote_cli_table_json_csv_and_plot(tmp_path: Path):
    write_jsonl(tmp_path / "train.jsonl", chat_rows(30))
    jf = job_yaml(
        tmp_path / "job.yaml",
        name="cli-quote",
        base_model=LLAMA,
        provider_options={"openai": {"base_model": "gpt-4o-mini"}},
        data={"train": "train.jsonl"},
        budget_usd=0.01,
    )
    env = cli_env(tmp_path, ANYTUNE_TODAY="2026-11-28")
    shown = run_anytune("quote", str(jf), "--providers", "all", env=env, check=True)
    for word in ("openai", "together", "hf", "2026-11-28", "over budget"):
        assert word in shown.stdout, shown.stdout
    data = json.loads(run_anytune("quote", str(jf), "--json", env=env, check=True).stdout)
    quotes = {(q["provider"], q["hardware"]): q for q in data["quotes"]}
    openai = quotes[("openai", None)]
    assert openai["billable_tokens"] > 0 and openai["price"] > 0 and openai["eta_seconds"] > 0
    assert openai["price_date"] == "2026-11-28" and openai["over_budget"] is True
    csv_out = run_anytune(
        "quote", str(jf), "--csv", "--plot", str(tmp_path / "cost.png"), env=env, check=True
    )
    header, *lines = csv_out.stdout.strip().splitlines()
    assert header.startswith("provider,hardware,model,available") and len(lines) == len(data["quotes"])
    png = (tmp_path / "cost.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_prices_cli_and_the_docs_list_every_price(tmp_path: Path):
    env = cli_env(tmp_path)
    table = run_anytune("prices", "--markdown", env=env, check=True).stdout
    docs = (Path(__file__).parents[1] / "docs" / "pricing.md").read_text()
    rows = [line for line in table.splitlines()[2:] if line.startswith("| ")]
    assert len(rows) == len(load_catalog().entries)
    missing = [r for r in rows if r not in docs]
    assert not missing, "docs/pricing.md is out of date: run `anytune prices --markdown`\n" + "\n".join(
        missing
    )


def test_chat_templates_render_as_jinjas_sandbox_renders_them_and_stay_sandboxed():
    """The loop variable's plain fields skip the sandbox's per-access checks (a third of a render): the text
    is the sandbox's own for a template that reads them, and anything else still goes through its checks."""
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from anytune.cost.billing import jinja_template

    source = (
        "{% for m in messages %}{{ loop.index0 }}/{{ loop.length }}{% if loop.first %}^{% endif %}"
        "{{ m['role'] }}:{{ m.content | trim }}{% if loop.last %}${% endif %}|{% endfor %}"
    )
    messages = [
        {"role": "system", "content": " be brief "},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]
    plain = [{**m, "content": m["content"] if isinstance(m["content"], str) else "hi"} for m in messages]
    reference = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)
    assert jinja_template(source)(messages) == reference.render(messages=plain, add_generation_prompt=False)
    assert jinja_template(source)(messages) == "0/2^system:be brief|1/2user:hi$|"
    escape = "{% for m in messages %}{{ loop.__init__.__globals__ }}{% endfor %}"
    with pytest.raises(SecurityError):
        jinja_template(escape)(messages)
    with pytest.raises(SecurityError):
        jinja_template("{{ messages.append(1) }}")(messages)
    # rendered without `Template.render` (its context is built once): globals, specials and errors as there
    uses_globals = (
        "{{ bos_token }}{% set ns = namespace(n=0) %}{% for i in range(messages|length) %}"
        "{% set ns.n = ns.n + 1 %}{% if messages[i]['role'] == 'bad' %}{{ raise_exception('no bad roles') }}"
        "{% endif %}{{ messages[i]['content'] }}{% endfor %}:{{ ns.n }}{{ add_generation_prompt }}"
    )
    render = jinja_template(uses_globals, {"bos_token": "<s>"})
    assert render(plain) == reference.environment.from_string(uses_globals).render(
        messages=plain, add_generation_prompt=False, bos_token="<s>"
    )
    assert render(plain) == "<s> be brief hi:2False"
    with pytest.raises(ValueError, match="no bad roles"):
        render([{"role": "bad", "content": "x"}])
