"""Graders (issue 32): one definition, read with its lines named, scored here the same way every time, and a
Python grader kept in its sandbox."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from anytune.errors import SpecError
from anytune.graders import Grader, GraderFailed, GraderInputError, PythonSandbox, parse_grader
from anytune.graders.files import load_grader_file
from anytune.graders.runtime import rouge_n, similarity, string_check
from anytune.graders.scoring import judge_score
from tests.conftest import anytune_in_process, write_jsonl

MULTI = {
    "type": "multi",
    "graders": {
        "exact": {"type": "string_check", "operation": "equals", "reference": "{{item.answer}}"},
        "close": {"type": "text_similarity", "metric": "fuzzy_match", "reference": "{{item.answer}}"},
    },
    "formula": "0.5 * exact + 0.5 * close",
}


@pytest.mark.parametrize(
    ("operation", "text", "reference", "expected"),
    [
        ("equals", "Paris", "Paris", 1.0),
        ("equals", "Paris ", "Paris", 0.0),
        ("not_equals", "Lyon", "Paris", 1.0),
        ("contains", "It is Paris.", "Paris", 1.0),
        ("not_contains", "It is Lyon.", "Paris", 1.0),
        ("iequals", "PARIS", "paris", 1.0),
        ("icontains", "it is PARIS", "Paris", 1.0),
        ("icontains", "it is Lyon", "Paris", 0.0),
        ("regex", "answer: 42", r"answer:\s*\d+$", 1.0),
        ("regex", "answer: none", r"answer:\s*\d+$", 0.0),
    ],
)
def test_string_checks(operation: str, text: str, reference: str, expected: float):
    assert string_check(operation, text, reference) == expected


def test_similarity_metrics_are_in_range_and_order_answers_by_closeness():
    assert similarity("fuzzy_match", "dlrow", "dlrow") == 1.0
    assert similarity("fuzzy_match", "dlrow!", "dlrow") == pytest.approx(10 / 11)  # Indel: 1 insertion in 11
    assert rouge_n("the cat sat", "the cat sat down", 1) == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert rouge_n("the cat sat", "a dog ran", 2) == 0.0
    for metric in ("fuzzy_match", "bleu", "rouge_1", "rouge_2", "rouge_l"):
        near = similarity(metric, "the quick brown fox jumps", "the quick brown fox jumped")
        far = similarity(metric, "completely different words here", "the quick brown fox jumped")
        assert 0.0 <= far < near <= 1.0, metric


def test_a_multi_grader_combines_its_parts_by_its_formula():
    grader = Grader(parse_grader(MULTI))
    parts = grader.parts("dlrow!", {"answer": "dlrow"})
    assert parts["exact"] == 0.0 and parts["close"] == pytest.approx(10 / 11)
    assert parts["score"] == pytest.approx(0.5 * 10 / 11)
    assert grader.score("dlrow", {"answer": "dlrow"}) == 1.0


def test_templates_read_nested_item_fields_and_the_answers_json():
    spec = parse_grader(
        {
            "type": "string_check",
            "operation": "equals",
            "input": "{{sample.output_json.city}}",
            "reference": "{{item.truth.city}}",
        }
    )
    grader = Grader(spec)
    assert grader.score('{"city": "Paris"}', {"truth": {"city": "Paris"}}) == 1.0
    with pytest.raises(GraderInputError, match="not JSON"):
        grader.score("Paris", {"truth": {"city": "Paris"}})
    with pytest.raises(GraderInputError, match=r"no 'truth' there \(it has: answer\)"):
        grader.score('{"city": "Paris"}', {"answer": "Paris"})


@pytest.mark.parametrize(
    ("grader", "message"),
    [
        ({**MULTI, "formula": "exact + close"}, "the formula gives 2"),
        ({**MULTI, "formula": "exact + other"}, "reads 'other', which is none of its graders"),
        ({**MULTI, "formula": "__import__('os').system('x')"}, "may hold numbers"),
        ({**MULTI, "formula": "exact / (close - close)"}, "divides by zero"),
        ({"type": "string_check", "operation": "equals", "reference": "{{answer}}"}, "is not a grader field"),
        (
            {"type": "string_check", "operation": "regex", "reference": "(unclosed"},
            "not a regular expression",
        ),
        ({"type": "python"}, "either `source` or `path`"),
        ({"type": "model_judge", "model": "m", "prompt": "p", "range": [1, 1]}, "low < high"),
        ({"type": "similarity", "reference": "x"}, "does not match any of the expected tags"),
    ],
)
def test_an_invalid_grader_is_refused_with_the_reason(grader: dict[str, object], message: str):
    with pytest.raises(ValueError, match=message):
        parse_grader(grader)


def test_a_grader_file_names_the_line_and_field_of_each_problem(tmp_path: Path):
    path = tmp_path / "grader.yaml"
    path.write_text(
        "type: multi\n"
        "graders:\n"
        "  exact:\n"
        "    type: string_check\n"
        "    operation: equal\n"
        '    reference: "{{item.answer}}"\n'
        "  close:\n"
        "    type: text_similarity\n"
        "    metric: fuzzy\n"
        '    reference: "{{item.answer}}"\n'
        "formula: 0.5 * exact + 0.5 * close\n"
    )
    with pytest.raises(SpecError) as caught:
        load_grader_file(path)
    assert caught.value.details[0].startswith(f"{path}:5: graders.exact.operation:")
    assert caught.value.details[1].startswith(f"{path}:9: graders.close.metric:")
    job = tmp_path / "job.yaml"
    job.write_text(
        "base_model: x\nmethod:\n  type: rft\n  grader:\n    type: string_check\n    operation: no\n"
    )
    with pytest.raises(SpecError) as caught:
        load_grader_file(job)
    assert any(d.startswith(f"{job}:6: method.grader.operation:") for d in caught.value.details), (
        caught.value.details
    )


def test_a_judge_answer_is_mapped_from_its_range():
    assert judge_score("Score: 7", 0, 10) == pytest.approx(0.7)
    assert judge_score("12 out of 10!", 0, 10) == 1.0
    with pytest.raises(Exception, match="no number"):
        judge_score("excellent", 0, 10)
    judge = Grader(
        parse_grader({"type": "model_judge", "model": "m", "prompt": "Rate {{sample.output_text}}"})
    )
    with pytest.raises(Exception, match="needs its model"):
        judge.score("x", {})
    asked: list[str] = []
    spec = parse_grader(
        {
            "type": "model_judge",
            "model": "judge-1",
            "prompt": "Is {{sample.output_text}} {{item.answer}}?",
            "range": [1, 5],
        }
    )
    graded = Grader(spec, judge=lambda model, prompt: asked.append(f"{model}|{prompt}") or "4").score(
        "a", {"answer": "b"}
    )
    assert graded == pytest.approx(0.75) and asked == ["judge-1|Is a b?"]


# ---------------------------------------------------------------------------------------- the sandbox


def _listening() -> tuple[socket.socket, int, list[bytes]]:
    """A real server on 127.0.0.1 that records whatever reaches it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    got: list[bytes] = []

    def accept() -> None:
        try:
            conn, _ = server.accept()
            got.append(conn.recv(100))
            conn.close()
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1], got


def test_a_python_grader_scores_in_its_own_process():
    source = "def grade(sample, item):\n    return 1.0 if sample['output_text'] == item['answer'] else 0.25\n"
    with PythonSandbox(source=source) as box:
        assert [box.score({"output_text": a}, {"answer": "x"}) for a in ("x", "y", "x")] == [1.0, 0.25, 1.0]


def test_the_sandbox_refuses_the_network(tmp_path: Path):
    server, port, got = _listening()
    source = (
        "import socket\n"
        "def grade(sample, item):\n"
        f"    s = socket.socket(); s.connect(('127.0.0.1', {port})); s.send(b'leak'); return 1.0\n"
    )
    try:
        with PythonSandbox(source=source, timeout_s=5) as box, pytest.raises(GraderFailed, match="socket"):
            box.score({"output_text": "x"}, {})
    finally:
        server.close()
    assert got == []


def test_the_sandbox_refuses_files_outside_its_folder_and_reads_its_own(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    folder = tmp_path / "grader"
    folder.mkdir()
    (folder / "labels.json").write_text(json.dumps({"x": 0.5}))
    (folder / "grade.py").write_text(
        "import json\n"
        "def grade(sample, item):\n"
        "    return json.load(open('labels.json'))[sample['output_text']]\n"
        "def peek(sample, item):\n"
        f"    return float(open({str(secret)!r}).read() == 'TOPSECRET')\n"
        "def write(sample, item):\n"
        "    open('out.txt', 'w').write('x'); return 1.0\n"
    )
    with PythonSandbox(path=folder / "grade.py") as box:
        assert box.score({"output_text": "x"}, {}) == 0.5
    outside = f"read only the files in its folder.*not {secret}"
    with (
        PythonSandbox(path=folder / "grade.py", entrypoint="peek") as box,
        pytest.raises(GraderFailed, match=outside),
    ):
        box.score({"output_text": "x"}, {})
    with (
        PythonSandbox(path=folder / "grade.py", entrypoint="write") as box,
        pytest.raises(GraderFailed, match="write"),
    ):
        box.score({"output_text": "x"}, {})
    assert not (folder / "out.txt").exists()


def test_the_sandbox_stops_a_grader_that_loops_or_eats_memory_and_goes_on():
    source = (
        "def grade(sample, item):\n"
        "    if sample['output_text'] == 'loop':\n"
        "        while True: pass\n"
        "    if sample['output_text'] == 'eat':\n"
        "        return len(bytearray(10 * 2**30))\n"
        "    return 1.0\n"
    )
    with PythonSandbox(source=source, timeout_s=1.5, memory_mb=256) as box:
        with pytest.raises(GraderFailed, match=r"time limit \(1.5 s\)"):
            box.score({"output_text": "loop"}, {})
        with pytest.raises(GraderFailed, match=r"memory limit \(256 MB\)"):
            box.score({"output_text": "eat"}, {})
        assert box.score({"output_text": "fine"}, {}) == 1.0  # a fresh process after the one that looped


def test_the_sandbox_keeps_secrets_and_processes_out(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-reach-a-grader")
    source = (
        "import os, subprocess\n"
        "def grade(sample, item):\n"
        "    if sample['output_text'] == 'env':\n"
        "        return 0.0 if any('sk-must' in v for v in os.environ.values()) else 1.0\n"
        "    subprocess.run(['true']); return 1.0\n"
    )
    with PythonSandbox(source=source) as box:
        assert box.score({"output_text": "env"}, {}) == 1.0
        with pytest.raises(GraderFailed, match="subprocess"):
            box.score({"output_text": "run"}, {})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def grade(sample, item):\n    return 'high'\n", "returned str, not a number"),
        ("def grade(sample, item):\n    return 1.5\n", r"returned 1.5, outside \[0, 1\]"),
        ("def grade(sample, item):\n    return float('nan')\n", "outside"),
        ("def grade(sample, item):\n    raise KeyError('reference')\n", "KeyError: 'reference'"),
        ("def score(sample, item):\n    return 1.0\n", "defines no function grade"),
        ("def grade(sample, item)\n    return 1.0\n", "does not load: SyntaxError"),
    ],
)
def test_a_python_grader_that_does_not_score_says_why(source: str, message: str):
    with PythonSandbox(source=source) as box, pytest.raises(GraderFailed, match=message):
        box.score({"output_text": "x"}, {})


# ---------------------------------------------------------------------------------------- anytune grade


def _reversal_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    words = ["abc", "hello", "world", "spam", "eggs"]
    data = write_jsonl(
        tmp_path / "data.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": f"Reverse: {w}"},
                    {"role": "assistant", "content": w[::-1]},
                ],
                "answer": w[::-1],
            }
            for w in words
        ],
    )
    answers = write_jsonl(
        tmp_path / "answers.jsonl",
        [json.dumps(a) for a in ["cba", "olleh", "dlrow!", {"output_text": "maps"}, "EGGS"]],
    )
    grader = tmp_path / "grader.yaml"
    import yaml

    grader.write_text(yaml.safe_dump(MULTI))
    return grader, data, answers


def test_grade_scores_each_line_with_the_mean_and_its_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    grader, data, answers = _reversal_files(tmp_path)
    code, output = anytune_in_process(
        capsys, "grade", str(grader), "--data", str(data), "--samples", str(answers), "--json"
    )
    assert code == 0, output
    result = json.loads(output)
    assert [round(line["score"], 3) for line in result["lines"]] == [1.0, 1.0, 0.455, 1.0, 0.0]
    assert result["mean"] == pytest.approx((3 + 0.5 * 10 / 11) / 5, abs=1e-4)
    low, high = result["ci"]
    assert low < result["mean"] < high
    assert result["parts"]["exact"] == 0.6
    code, output = anytune_in_process(capsys, "grade", str(grader), "--data", str(data))
    assert code == 0 and "mean score 1.000" in output  # each line's own answer is a perfect one


def test_grade_names_the_line_a_grader_cannot_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    grader, data, answers = _reversal_files(tmp_path)
    lines = data.read_text().splitlines()
    lines[2] = json.dumps({"messages": json.loads(lines[2])["messages"]})  # line 3 loses its answer field
    data.write_text("\n".join(lines) + "\n")
    code, output = anytune_in_process(
        capsys, "grade", str(grader), "--data", str(data), "--samples", str(answers)
    )
    assert code == 2
    assert f"{data}:3: the grader reads {{{{item.answer}}}} but there is no 'answer' there" in output
    assert "Traceback" not in output


# ---------------------------------------------------------------------------------------- graders as metrics


def test_a_grader_is_an_evaluation_metric_with_intervals_and_the_paired_change(tmp_path: Path):
    from anytune.spec import EvalSpec
    from tests.conftest import reversal_rows
    from tests.test_client import make_client, spec

    client, _ = make_client()  # the scripted fine-tune reverses the words; its base does not
    data = {
        "train": str(write_jsonl(tmp_path / "train.jsonl", reversal_rows(30))),
        "test": str(write_jsonl(tmp_path / "test.jsonl", reversal_rows(12, seed=9))),
    }
    job = client.follow(client.submit(spec(data, name="rev")).id, interval=0)
    graded = {
        **MULTI,
        "graders": {k: {**v, "reference": "{{item.reference}}"} for k, v in MULTI["graders"].items()},
    }
    result = client.evaluate(job.id, EvalSpec(metrics=["exact_match", {"grader": graded, "name": "reward"}]))
    base, tuned = result.subject("base"), result.subject("fine-tuned")
    assert tuned.metrics["reward"] == 1.0 and base.metrics["reward"] < 0.5
    low, high = base.ci["reward"]
    assert low <= base.metrics["reward"] <= high and len(tuned.scores["reward"]) == 12
    [change] = [c for c in result.comparisons if c.metric == "reward"]
    assert change.delta > 0 and change.low > 0 and change.wins == 12 - change.ties
    stored = client.registry.evaluations(job_id=job.id, subject="fine-tuned")[-1]
    assert stored.metrics["reward"] == 1.0


def test_an_rft_jobs_own_grader_is_the_metric_grader(tmp_path: Path):
    from anytune.errors import UsageError
    from anytune.spec import EvalSpec
    from tests.test_client import make_client, spec

    client, _ = make_client()
    data = {
        "train": str(
            write_jsonl(
                tmp_path / "train.jsonl",
                [
                    {
                        "messages": [
                            {"role": "user", "content": "Reverse: a b"},
                            {"role": "assistant", "content": "b a"},
                        ]
                    }
                ]
                * 4,
            )
        )
    }
    job = client.follow(client.submit(spec(data, name="sft")).id, interval=0)
    with pytest.raises(UsageError, match="metric 'grader' is an RFT job's own grader"):
        client.evaluate(job.id, EvalSpec(data=data["train"], metrics=["grader"]))
    assert client.registry.evaluations(job_id=job.id) == []


def test_anytune_eval_scores_a_grader_file_on_a_hosted_fine_tune(
    openai_emu, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from anytune.client import Client
    from tests.conftest import chat_splits
    from tests.test_openai import openai_spec

    data = chat_splits(tmp_path, seed=3)
    job = Client().follow(Client().submit(openai_spec(data, evaluation=None)).id)
    grader = tmp_path / "reward.yaml"
    grader.write_text("type: text_similarity\nmetric: fuzzy_match\nreference: '{{item.reference}}'\n")
    code, output = anytune_in_process(
        capsys, "eval", job.id, "--data", data["train"], "--grader", str(grader), "--json"
    )
    assert code == 0, output
    result, _ = json.JSONDecoder().raw_decode(output)  # the JSON on stdout; the progress lines follow it
    base, tuned = (
        next(s for s in result["subjects"] if s["subject"] == name) for name in ("base", "fine-tuned")
    )
    assert list(tuned["metrics"]) == ["reward"]  # with no --metrics, the grader is the metric
    assert tuned["metrics"]["reward"] > base["metrics"]["reward"]
    assert tuned["ci"]["reward"][0] <= tuned["metrics"]["reward"] <= tuned["ci"]["reward"][1]
    [change] = [c for c in result["comparisons"] if c["metric"] == "reward"]
    assert change["low"] > 0


# ------------------------------------------------------------------ the grader as code providers run


PORTABLE = {
    "type": "multi",
    "graders": {
        "exact": {"type": "string_check", "operation": "iequals", "reference": "{{item.reference}}"},
        "close": {"type": "text_similarity", "metric": "fuzzy_match", "reference": "{{item.reference}}"},
        "words": {"type": "text_similarity", "metric": "rouge_l", "reference": "{{item.reference}}"},
        "short": {
            "type": "python",
            "source": "def grade(sample, item):\n"
            "    return float(len(sample['output_text']) <= len(item['reference']) + 2)\n",
        },
    },
    "formula": "0.4 * exact + 0.2 * close + 0.2 * words + 0.2 * short",
}
ANSWERS = ["Paris", "paris!", "The capital is Paris, of course", "", "Lyon", "pArIs"]


def test_the_generated_grader_module_needs_only_the_standard_library_and_scores_as_anytune(tmp_path: Path):
    """What runs in a Fireworks evaluator and a Bedrock Lambda: run by a bare interpreter (no site-packages,
    so neither anytune nor rapidfuzz), it gives anytune's own scores, part by part."""
    import subprocess
    import sys

    from anytune.graders.portable import grader_module

    grader = parse_grader(PORTABLE)
    module = tmp_path / "generated.py"
    module.write_text(grader_module(grader))
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import generated; "
        f"print(json.dumps([generated.score_answer(a, {{'reference': 'Paris'}}) for a in {ANSWERS!r}]))"
    )
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    with Grader(grader) as here:
        expected = [here.parts(a, {"reference": "Paris"}) for a in ANSWERS]
    got = json.loads(run.stdout)
    assert len(got) == len(expected)
    for answer, mine, theirs in zip(ANSWERS, expected, got, strict=True):
        assert theirs == pytest.approx(mine), answer
    assert len({round(g["score"], 6) for g in got}) >= 4  # the answers are told apart


def test_fuzzy_match_without_rapidfuzz_is_rapidfuzzs_number():
    import random

    from rapidfuzz import fuzz

    from anytune.graders import runtime

    rng = random.Random(5)
    for _ in range(200):
        a = "".join(rng.choice("abc de") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("abc de") for _ in range(rng.randint(0, 12)))
        pure = 1.0 if not a and not b else 2 * runtime._lcs(a, b) / (len(a) + len(b))
        assert pure == pytest.approx(fuzz.ratio(a, b) / 100), (a, b)


def test_several_top_level_graders_are_their_mean_and_errors_name_the_item(tmp_path: Path):
    from anytune.graders.spec import as_one

    graders = [
        {"type": "string_check", "operation": "equals", "reference": "{{item.reference}}", "name": "same"},
        {"type": "string_check", "operation": "contains", "reference": "a"},
    ]
    one = as_one(parse_grader(graders))
    assert one.type == "multi" and list(one.graders) == ["same", "g2"] and one.formula == "(same + g2) / 2"
    with Grader(one) as grader:
        assert grader.score("banana", {"reference": "banana"}) == 1.0
        assert grader.score("cherry", {"reference": "banana"}) == 0.0
        assert grader.score("apple", {"reference": "banana"}) == 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "grader:\n  - {type: string_check, operation: equals, reference: x}\n"
        "  - {type: text_similarity, metric: cosine, reference: x}\n"
    )
    with pytest.raises(SpecError) as info:
        load_grader_file(bad)
    [detail] = info.value.details
    assert "grader.1.metric: Input should be" in detail and "tagged-union" not in detail


def test_the_openai_compiler_keeps_native_checks_and_runs_the_rest_as_anytunes_rules():
    from anytune_openai.emulated_graders import grade, grader_problem
    from anytune_openai.graders import compile_grader

    grader = parse_grader(
        {
            "type": "multi",
            "graders": {
                "has": {"type": "string_check", "operation": "icontains", "reference": "{{item.reference}}"},
                "exact": {"type": "string_check", "operation": "iequals", "reference": "{{item.reference}}"},
                "judge": {
                    "type": "model_judge",
                    "model": "gpt-4o-mini",
                    "prompt": "Rate it",
                    "range": [0, 10],
                },
                "code": {
                    "type": "python",
                    "source": "def check(s, i):\n    return 1.0\n",
                    "entrypoint": "check",
                },
            },
            "formula": "0.4 * has + 0.3 * exact + 0.2 * judge + 0.1 * code",
        }
    )
    compiled = compile_grader(grader)
    parts = compiled["graders"]
    assert parts["has"] == {
        "type": "string_check",
        "name": "has",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "operation": "ilike",
    }
    assert parts["exact"]["type"] == "python" and "def grade(sample, item)" in parts["exact"]["source"]
    assert parts["judge"]["type"] == "score_model" and parts["judge"]["range"] == [0.0, 10.0]
    assert "return check(sample, item)" in parts["code"]["source"]
    assert compiled["calculate_output"] == "0.4 * has + 0.3 * exact + 0.2 * ((judge - 0) / 10) + 0.1 * code"
    assert grader_problem(compiled) is None  # valid as OpenAI checks it
    item = {"reference": "Paris"}  # run as the emulator runs it: the judge answers mid-range (5 of 10)
    assert grade(compiled, "paris", item) == pytest.approx(0.4 + 0.3 + 0.2 * 0.5 + 0.1)
    broken = {**compiled, "calculate_output": "has + nobody"}
    assert grader_problem(broken)[0] == "grader.calculate_output"
