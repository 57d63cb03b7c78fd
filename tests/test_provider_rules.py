"""Each provider's own data rules are applied by its `prepare()` before anything is recorded or uploaded,
and `anytune run` and `anytune quote` both refuse with the file and line, exit 2, no job row, no upload."""

from __future__ import annotations

import builtins
import io
import json
from pathlib import Path

import pytest

from anytune.data import clean_files
from anytune.registry import Registry
from tests.conftest import anytune_in_process, job_yaml, reversal_rows, write_jsonl


def cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    return anytune_in_process(capsys, *args)


def assert_refused(code: int, output: str, where: str) -> None:
    assert code == 2, output
    assert where in " ".join(output.split()), output


def no_job_recorded() -> None:
    assert Registry().list_jobs(limit=None) == []


MODELS = {"openai": "gpt-4o-mini", "together": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"}


def job_for(provider: str, tmp_path: Path, train: Path) -> Path:
    return job_yaml(
        tmp_path / "job.yaml",
        name="rules",
        base_model=MODELS[provider],
        provider=provider,
        data={"train": str(train)},
        hyperparameters={"epochs": 1},
    )


def openai_job(tmp_path: Path, train: Path) -> Path:
    return job_for("openai", tmp_path, train)


def together_job(tmp_path: Path, train: Path) -> Path:
    return job_for("together", tmp_path, train)


@pytest.mark.parametrize("command", ["run", "quote"])
def test_openai_refuses_an_over_long_example(openai_emu, tmp_path, capsys, command):
    rows = reversal_rows(12)
    rows[3]["messages"][0]["content"] = "word " * 70_000  # over gpt-4o-mini's 65,536 tokens per example
    train = write_jsonl(tmp_path / "long.jsonl", rows)
    args = [command, str(openai_job(tmp_path, train))] + (
        ["--providers", "openai"] if command == "quote" else []
    )
    code, output = cli(*args, capsys=capsys)
    assert_refused(code, output, f"{train}:4: 70,0")
    assert "65,536 per example" in output
    no_job_recorded()
    assert openai_emu.recorder.count("POST", "/v1/files") == 0 and not openai_emu.jobs


@pytest.mark.parametrize("command", ["run", "quote"])
def test_a_broken_line_is_refused_with_exit_2_by_run_and_by_quote(openai_emu, tmp_path, capsys, command):
    """Not a provider's rule but anytune's own checks: every provider refuses, the line is named, exit 2
    (`anytune quote` printed "refused" and exited 0)."""
    train = write_jsonl(tmp_path / "broken.jsonl", [*reversal_rows(11), "{not json"])
    args = [command, str(openai_job(tmp_path, train))] + (
        ["--providers", "openai"] if command == "quote" else []
    )
    code, output = cli(*args, capsys=capsys)
    assert_refused(code, output, f"{train}:12")
    no_job_recorded()


@pytest.mark.parametrize("command", ["run", "quote"])
def test_openai_refuses_fewer_than_ten_examples(openai_emu, tmp_path, capsys, command):
    train = write_jsonl(tmp_path / "few.jsonl", reversal_rows(7))
    args = [command, str(openai_job(tmp_path, train))] + (
        ["--providers", "openai"] if command == "quote" else []
    )
    code, output = cli(*args, capsys=capsys)
    assert_refused(code, output, f"{train}: 7 training example(s); openai needs at least 10")
    no_job_recorded()
    assert openai_emu.recorder.count("POST", "/v1/files") == 0 and not openai_emu.jobs


@pytest.mark.parametrize("command", ["run", "quote"])
def test_together_refuses_two_user_turns_in_a_row(together_emu, tmp_path, capsys, command):
    rows = reversal_rows(6, seed=2)
    rows[2]["messages"] = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
    ]
    train = write_jsonl(tmp_path / "turns.jsonl", rows)
    args = [command, str(together_job(tmp_path, train))]
    args += ["--providers", "together"] if command == "quote" else []
    code, output = cli(*args, capsys=capsys)
    assert_refused(code, output, f"{train}:3: two user messages in a row")
    no_job_recorded()
    assert together_emu.recorder.count("POST", "/v1/files") == 0 and not together_emu.jobs


@pytest.mark.parametrize("command", ["run", "quote"])
def test_together_refuses_a_file_mixing_two_of_its_formats(together_emu, tmp_path, capsys, command):
    rows = [{"prompt": f"Say {i}", "completion": f"{i}!"} for i in range(6)]
    rows[4] = {  # the same anytune format, but Together would need it as a conversation
        "prompt": [{"role": "user", "content": "Say 4"}],
        "completion": [{"role": "assistant", "content": "4!"}],
    }
    train = write_jsonl(tmp_path / "mixed.jsonl", rows)
    args = [command, str(together_job(tmp_path, train))]
    args += ["--providers", "together"] if command == "quote" else []
    code, output = cli(*args, capsys=capsys)
    assert_refused(code, output, f"{train}:5: a conversation example, but line 1 is a instruction one")
    no_job_recorded()
    assert together_emu.recorder.count("POST", "/v1/files") == 0 and not together_emu.jobs


def test_quote_for_every_provider_shows_each_ones_data_problems(openai_emu, together_emu, tmp_path, capsys):
    """One file that only OpenAI refuses: the table still prices the others and names OpenAI's lines."""
    train = write_jsonl(tmp_path / "few.jsonl", reversal_rows(7))
    job = job_yaml(
        tmp_path / "job.yaml",
        name="rules",
        base_model="tiny",
        provider="local",
        data={"train": str(train)},
        provider_options={
            "openai": {"base_model": "gpt-4o-mini"},
            "together": {"base_model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"},
        },
    )
    code, output = cli("quote", str(job), "--providers", "local,openai,together", "--json", capsys=capsys)
    assert code == 2
    rows = {r["provider"]: r for r in json.loads(output[: output.rindex("}") + 1])["quotes"]}
    assert rows["together"]["available"] and rows["together"]["price"] is not None
    assert not rows["openai"]["available"]
    assert rows["openai"]["problems"] == [f"{train}: 7 training example(s); openai needs at least 10"]
    no_job_recorded()


def _count_opens(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> dict[Path, int]:
    """How often each of `paths` is opened from now on (every reader opens with open())."""
    opened = {p.resolve(): 0 for p in paths}
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(file, str | Path) and Path(file).resolve() in opened:
            opened[Path(file).resolve()] += 1
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    return opened


@pytest.mark.parametrize("kept", [True, False], ids=["small-files-kept", "large-files-streamed"])
def test_one_run_parses_each_data_file_once(kept, openai_emu, tmp_path, capsys, monkeypatch):
    """The checks of a run (validation, statistics, prompts shared between train and test) parse each file
    once, and keep a small file's records for the provider's conversion of train and the evaluation of test
    after training (three parses of each before). A file too large to hold is read a second time instead."""
    if not kept:
        monkeypatch.setattr(clean_files, "KEEP_BYTES", 100)
    rows = reversal_rows(60, seed=6)
    train = write_jsonl(tmp_path / "train.jsonl", rows[:45])
    test = write_jsonl(tmp_path / "test.jsonl", rows[45:])
    job = job_yaml(
        tmp_path / "job.yaml",
        name="reads",
        base_model="gpt-4o-mini",
        provider="openai",
        data={"train": str(train), "test": str(test)},
        hyperparameters={"epochs": 1},
        evaluation={"metrics": ["exact_match"], "limit": 3},
    )
    opened = _count_opens(monkeypatch, train, test)
    code, output = cli("run", str(job), capsys=capsys)
    assert code == 0 and "held-out evaluation" in output, output
    reads = 1 if kept else 2
    assert opened == {train.resolve(): reads, test.resolve(): reads}


def _varied_chats(n: int) -> list[dict]:
    """Chats with what a conversion might be tempted to edit in place: system turns, weights, names, content
    parts, tool calls and their answers."""
    rows: list[dict] = []
    for i, row in enumerate(reversal_rows(n, seed=9)):
        user, answer = row["messages"]
        kind = i % 4
        if kind == 1:
            row = {"messages": [{"role": "system", "content": "Be brief."}, user, {**answer, "weight": 1}]}
        elif kind == 2:
            parts = [{"type": "text", "text": user["content"]}]
            row = {"messages": [{"role": "user", "content": parts, "name": "ann"}, answer, user, answer]}
        elif kind == 3:
            call = {
                "id": f"c{i}",
                "type": "function",
                "function": {"name": "rev", "arguments": json.dumps({"s": user["content"]})},
            }
            row = {
                "messages": [
                    user,
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": f"c{i}", "content": "ok"},
                    answer,
                ]
            }
        rows.append(row)
    return rows


def test_no_provider_changes_the_records_it_is_given(tmp_path, capsys):
    """Every provider's conversion of a quote takes the records the validation kept (one list for all of them,
    and for the evaluation after): none may change one, or the next pass would read what it changed."""
    train = write_jsonl(tmp_path / "train.jsonl", _varied_chats(40))
    job = job_yaml(
        tmp_path / "job.yaml",
        name="shared",
        base_model="meta-llama/Llama-3.1-8B-Instruct",
        data={"train": str(train)},
    )
    code, output = cli("quote", str(job), "--providers", "all", "--json", capsys=capsys)
    assert code in (0, 2), output
    key = clean_files.file_key(train)
    kept = clean_files.kept_records(key) if key else None
    assert kept is not None, "the validation kept the small file's records"
    assert kept == [(n, json.loads(line)) for n, line in enumerate(train.read_text().splitlines(), 1)]


def test_one_run_with_validation_split_reads_the_training_file_at_most_twice(
    openai_emu, tmp_path, capsys, monkeypatch
):
    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(60, seed=5))
    job = job_yaml(
        tmp_path / "job.yaml",
        name="reads",
        base_model="gpt-4o-mini",
        provider="openai",
        data={"train": str(train), "validation_split": 0.2},
        hyperparameters={"epochs": 1},
    )
    reads: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(file, str | Path) and Path(file).resolve() == train.resolve():
            reads.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    code, output = cli("run", str(job), "--no-eval", capsys=capsys)
    assert code == 0, output
    assert 1 <= len(reads) <= 2, reads
    [remote] = openai_emu.jobs.values()
    assert remote.validation_file  # the split was made and both halves uploaded
