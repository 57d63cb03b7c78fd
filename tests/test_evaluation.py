"""The evaluation layer: metrics, intervals and paired comparisons, drift, and the registry views on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from anytune.errors import UsageError
from anytune.evaluation.metrics import (
    bleu,
    chrf,
    json_match,
    json_schema,
    json_valid,
    macro_f1,
    resolve_metrics,
    rouge_l,
)
from anytune.evaluation.stats import bootstrap_ci, paired, permutation_test
from anytune.jobs import ModelArtifact
from anytune.spec import EvalSpec
from tests.conftest import reversal_rows, write_jsonl
from tests.scripted_backend import ScriptedBackend, ScriptedPlugin
from tests.test_client import make_client, spec

# ------------------------------------------------------------------------------------------- metrics


def test_rouge_l_is_the_longest_common_subsequence_f_measure():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 tokens: P = 5/6, R = 5/5
    assert rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(2 * (5 / 6) / (5 / 6 + 1))
    assert rouge_l("a b c", "c b a") == pytest.approx(1 / 3)  # LCS of length 1
    assert rouge_l("", "") == 1.0 and rouge_l("x", "") == 0.0


def test_bleu_and_chrf_are_sacrebleu_scaled_to_one():
    pytest.importorskip("sacrebleu")
    assert bleu("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert chrf("Reversed: a b c", "Reversed: a b c") == pytest.approx(1.0)
    assert 0 < bleu("the cat sat on a mat", "the cat sat on the mat") < 1
    assert chrf("completely different", "Reversed: a b c") < 0.2


def test_json_metrics_parse_compare_and_check_shape():
    assert json_valid('```json\n{"a": 1}\n```', "") == 1.0 and json_valid("{a: 1}", "") == 0.0
    assert json_match('{"b": [1, 2], "a": "x"}', '{"a":"x","b":[1,2]}') == 1.0
    assert json_match('{"a": "y", "b": [1, 2]}', '{"a":"x","b":[1,2]}') == 0.0
    assert json_schema('{"a": "y", "b": [3]}', '{"a":"x","b":[1,2]}') == 1.0  # same keys and types
    assert json_schema('{"a": 1, "b": [3]}', '{"a":"x","b":[1,2]}') == 0.0  # a is a number, not a string
    assert json_schema('{"a": "y"}', '{"a":"x","b":[1,2]}') == 0.0  # b is missing


def test_macro_f1_weighs_every_label_equally():
    refs = ["spam"] * 8 + ["ham"] * 2
    always_spam = ["spam"] * 10
    # spam: P 0.8 R 1 -> F1 8/9; ham: never predicted -> 0; macro = 4/9 though accuracy is 80%
    assert macro_f1(always_spam, refs) == pytest.approx((16 / 18 + 0) / 2)
    assert macro_f1(refs, refs) == 1.0
    assert resolve_metrics(["macro_f1"])["macro_f1"](always_spam, refs) == pytest.approx(4 / 9)


def test_unknown_metric_names_the_available_ones():
    with pytest.raises(UsageError) as info:
        resolve_metrics(["exact_match", "bluert"])
    assert "bluert" in info.value.message and "rouge_l" in (info.value.hint or "")


# ------------------------------------------------------------------------------------------- intervals


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_examples():
    metric = resolve_metrics(["exact_match"])["exact_match"]
    small_scores = [1.0, 0.0] * 10
    big_scores = [1.0, 0.0] * 500
    low_s, high_s = bootstrap_ci(metric, ["x"] * 20, ["x"] * 20, small_scores)
    low_b, high_b = bootstrap_ci(metric, ["x"] * 1000, ["x"] * 1000, big_scores)
    assert low_s < 0.5 < high_s and low_b < 0.5 < high_b
    assert (high_b - low_b) < (high_s - low_s) / 3  # ~ 1/sqrt(50) of the width
    assert bootstrap_ci(metric, ["x"] * 20, ["x"] * 20, small_scores) == (low_s, high_s)  # fixed seed


def test_paired_comparison_gives_the_difference_interval_and_win_rate():
    metric = resolve_metrics(["exact_match"])["exact_match"]
    refs = [str(i) for i in range(40)]
    a = [r if i < 10 else "wrong" for i, r in enumerate(refs)]  # 25%
    b = [r if i < 30 else "wrong" for i, r in enumerate(refs)]  # 75%, right wherever a is right
    c = paired(
        metric,
        ("a", a, [float(x == y) for x, y in zip(a, refs, strict=False)]),
        ("b", b, [float(x == y) for x, y in zip(b, refs, strict=False)]),
        refs,
    )
    assert c.delta == pytest.approx(0.5) and c.low > 0.3 and c.high < 0.7 and c.significant
    assert (c.wins, c.ties, c.losses) == (20, 20, 0) and c.win_rate == 1.0
    same = paired(metric, ("a", a, None), ("b", list(a), None), refs)
    assert same.delta == 0 and (same.low, same.high) == (0, 0) and not same.significant


def test_permutation_test_finds_a_real_drop_and_not_noise():
    steady = permutation_test([1.0, 0.0] * 50, [0.0, 1.0] * 50, metric="exact_match")
    assert steady.p_value > 0.5 and not steady.drifted and steady.verdict == "no drift detected"
    dropped = permutation_test([1.0] * 45 + [0.0] * 5, [1.0] * 20 + [0.0] * 30, metric="exact_match")
    assert dropped.p_value < 0.001 and dropped.drifted and dropped.delta == pytest.approx(0.4 - 0.9)
    tolerant = permutation_test(
        [1.0] * 45 + [0.0] * 5, [1.0] * 20 + [0.0] * 30, metric="exact_match", tolerance=0.6
    )
    assert not tolerant.drifted  # a 50-point drop is within a 60-point tolerance
    assert "permutation test" in dropped.statement and "p = " in dropped.statement


# ---------------------------------------------------------------------------- client, registry, drift


def test_evaluation_stores_intervals_per_example_scores_and_the_paired_comparison(tmp_path: Path):
    client, _ = make_client()
    data = {
        "train": str(write_jsonl(tmp_path / "train.jsonl", reversal_rows(30))),
        "test": str(write_jsonl(tmp_path / "test.jsonl", reversal_rows(12, seed=9))),
    }
    job = client.follow(client.submit(spec(data, name="rev")).id, interval=0)
    result = client.evaluate(job.id, EvalSpec(metrics=["exact_match", "rouge_l"]))
    tuned = result.subject("fine-tuned")
    assert tuned.ci["exact_match"] == (1.0, 1.0) and tuned.scores["exact_match"] == [1.0] * 12
    [exact] = [c for c in result.comparisons if c.metric == "exact_match"]
    assert (exact.a, exact.b, exact.delta, exact.wins, exact.losses) == ("base", "fine-tuned", 1.0, 12, 0)
    stored = client.registry.evaluations(job_id=job.id, subject="fine-tuned")[-1]
    assert stored.ci["exact_match"] == (1.0, 1.0) and stored.scores("rouge_l") == tuned.scores["rouge_l"]
    assert stored.samples and stored.samples["comparisons"][0]["b"] == "fine-tuned"


def test_the_same_evaluation_by_model_reference_and_drift_against_the_baseline(tmp_path: Path):
    from anytune.workflows.drift import drift_check

    client, _backend = make_client()
    rows = reversal_rows(60, seed=4)
    data = {
        "train": str(write_jsonl(tmp_path / "train.jsonl", rows[:30])),
        "test": str(write_jsonl(tmp_path / "ref.jsonl", rows[30:])),
    }
    client.follow(client.submit(spec(data, name="rev")).id, interval=0)
    baseline = client.evaluate_targets(["rev@1"], EvalSpec(data=data["test"], compare_base=False))
    assert baseline.subjects[0].subject == "rev@1" and baseline.subjects[0].metrics["exact_match"] == 1.0
    # new traffic in another shape: the scripted model reverses only "Reverse: ..." prompts correctly
    shifted = [
        {
            "messages": [
                {"role": "user", "content": f"Reverse: {r['messages'][1]['content'].split(': ')[1]}!"},
                {"role": "assistant", "content": "nope"},
            ]
        }
        for r in rows[:30]
    ]
    new_data = write_jsonl(tmp_path / "new.jsonl", shifted)
    result = client.evaluate_targets(["rev@1"], EvalSpec(data=str(new_data), compare_base=False))
    report = drift_check(client.registry, client.resolve_target("rev@1"), result, "baseline")
    assert report.test.baseline_mean == 1.0 and report.test.new_mean == 0.0
    assert report.test.drifted and report.verdict.startswith("drift")
    assert report.baseline_fingerprint == baseline.dataset_fingerprint
    same = client.evaluate_targets(
        ["rev@1"], EvalSpec(data=str(write_jsonl(tmp_path / "more.jsonl", rows[:25])), compare_base=False)
    )
    assert not drift_check(client.registry, client.resolve_target("rev@1"), same, "baseline").test.drifted


def test_re_registering_makes_a_new_version_and_leaves_the_old_one_alone(tmp_path: Path):
    client, _ = make_client()
    art = ModelArtifact(provider="scripted", model_id="ft:one", kind="provider_model", base_model="base")
    first = client.registry.register_model("m", art)
    second = client.registry.register_model("m", art.model_copy(update={"model_id": "ft:two"}))
    assert (first.version, second.version) == (1, 2)
    assert (
        client.registry.get_model("m@1").model_id == "ft:one"
        and client.registry.get_model("m").model_id == "ft:two"
    )


class _Judge(ScriptedBackend):
    """A judge that prefers the answer equal to the reference; `biased` always says "A" (first read)."""

    name = "judge"

    def __init__(self, biased: bool = False) -> None:
        super().__init__()
        self.biased = biased
        self.asked: list[str] = []

    def generate(self, model, prompts, params):  # type: ignore[no-untyped-def]
        out = []
        for p in prompts:
            text = p[-1]["content"]
            self.asked.append(text)
            if self.biased:
                out.append("A")
                continue
            ref = text.split("Reference answer:\n", 1)[1].split("\n\nAnswer A:", 1)[0]
            a = text.split("Answer A:\n", 1)[1].split("\n\nAnswer B:", 1)[0]
            b = text.split("Answer B:\n", 1)[1].split("\n\nReply with", 1)[0]
            out.append("A" if a == ref else "B" if b == ref else "TIE")
        return out


@pytest.mark.parametrize("biased", [False, True])
def test_pairwise_judge_swaps_the_answers_so_position_bias_becomes_a_tie(tmp_path: Path, biased: bool):
    client, _ = make_client()
    judge = _Judge(biased=biased)
    client.plugins.register(ScriptedPlugin(judge), name="judge-plugin")
    data = {
        "train": str(write_jsonl(tmp_path / "train.jsonl", reversal_rows(30))),
        "test": str(write_jsonl(tmp_path / "test.jsonl", reversal_rows(8, seed=2))),
    }
    job = client.follow(client.submit(spec(data, name="rev")).id, interval=0)
    result = client.evaluate(job.id, EvalSpec(metrics=["exact_match"], judge="judge:any-judge-model"))
    [verdict] = [c for c in result.comparisons if c.metric == "judge"]
    assert len(judge.asked) == 16  # every pair twice, answers swapped
    assert "Answer A:\nReverse: " in judge.asked[0] and "Answer A:\nReversed: " in judge.asked[1]  # swapped
    if biased:
        assert (verdict.wins, verdict.ties, verdict.losses, verdict.delta) == (0, 8, 0, 0.0)
    else:
        assert (verdict.wins, verdict.losses, verdict.win_rate, verdict.delta) == (8, 0, 1.0, 1.0)
        assert verdict.significant and "judged by any-judge-model" in (verdict.note or "")


def test_export_to_mlflow_carries_lineage_metrics_and_aliases(tmp_path: Path):
    mlflow = pytest.importorskip("mlflow")
    from anytune.registry.mlflow_export import export_to_mlflow

    client, _ = make_client()
    data = {
        "train": str(write_jsonl(tmp_path / "train.jsonl", reversal_rows(30))),
        "test": str(write_jsonl(tmp_path / "test.jsonl", reversal_rows(8, seed=2))),
    }
    job = client.follow(client.submit(spec(data, name="rev")).id, interval=0)
    client.evaluate(job.id, EvalSpec(metrics=["exact_match"]))
    client.registry.set_alias("rev", "production", 1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = export_to_mlflow(
        client.registry, "rev@production", tracking_uri=uri, artifact_location=str(tmp_path / "artifacts")
    )
    ml = mlflow.MlflowClient(tracking_uri=uri)
    version = ml.get_model_version_by_alias("rev", "production")
    assert str(version.version) == done["mlflow_version"] and version.run_id == done["run_id"]
    assert version.tags["anytune.job_id"] == job.id and version.tags["anytune.provider"] == "scripted"
    assert version.tags["anytune.dataset_fingerprint"] == job.dataset_fingerprint
    assert version.tags["anytune.cost.quoted"] == "1.0"
    run = ml.get_run(done["run_id"])
    assert run.data.metrics["eval.exact_match"] == 1.0 and run.data.tags["anytune.model"] == "rev@1"
    assert run.info.artifact_uri.startswith(str(tmp_path / "artifacts"))  # nothing in the working tree
