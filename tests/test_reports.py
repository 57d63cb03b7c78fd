"""One evaluation and registry layer end to end, through the CLI: a local adapter and an OpenAI (emulated)
fine-tune scored by the same `anytune eval` command, compared in one report that headless Chromium renders,
aliases seen across processes, a served model answering the official OpenAI SDK, and merged weights."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from anytune.testing.clock import RealClock
from anytune.testing.server import EmulatorServer, free_port
from anytune_openai.emulator import OpenAIEmulator
from tests.conftest import cli_env, reversal_rows, run_anytune, write_jsonl

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags the machine notes ask for: no sandbox as root, and no background traffic on a closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-file-access-from-files",
]
IMAGE_PROBE = """
<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.body.setAttribute('data-probe', JSON.stringify(imgs.map(i => ({
    src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth, h: i.naturalHeight}))));
});
</script>
"""


def rendered_images(html: Path, tmp_path: Path) -> list[dict]:
    """Load the report in headless Chromium and return, for every <img>, whether it loaded and its size."""
    import html as html_lib
    import json

    probe = html.with_name(
        "probe.html"
    )  # beside the report, so its relative image paths resolve the same way
    probe.write_text(
        html.read_text(encoding="utf-8").replace("</body>", IMAGE_PROBE + "</body>"), encoding="utf-8"
    )
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, done.stdout[-2000:]
    return json.loads(html_lib.unescape(found.group(1)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path):  # type: ignore[no-untyped-def]
    """A local adapter and an OpenAI-emulator fine-tune of the same task, both trained through `anytune run`
    (once for the module: the tests after it read and add, never undo)."""
    tmp_path = tmp_path_factory.mktemp("trained")
    rows = reversal_rows(60, seed=17)
    write_jsonl(tmp_path / "train.jsonl", rows[:48])
    write_jsonl(tmp_path / "test.jsonl", rows[48:])
    job = {
        "name": "rev",
        "base_model": str(tiny_model),
        "provider_options": {"openai": {"base_model": "gpt-4o-mini"}},
        "method": "sft",
        "adapter": {"type": "lora", "r": 8, "alpha": 16},
        "hyperparameters": {"max_steps": 24, "batch_size": 8, "learning_rate": 3e-3, "epochs": 1},
        "data": {"train": "train.jsonl", "test": "test.jsonl"},
        "evaluation": {"metrics": ["exact_match", "token_f1"]},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    emu = OpenAIEmulator(clock=RealClock(speed=40), step_seconds=0.5)
    with EmulatorServer(emu.app) as server:
        env = cli_env(
            tmp_path,
            OPENAI_BASE_URL=f"{server.url}/v1",
            OPENAI_API_KEY="sk-emulator-report",
            ANYTUNE_TODAY="2026-11-28",
        )
        for provider, name in (("local", "rev-local"), ("openai", "rev-openai")):
            done = run_anytune(
                "run",
                str(tmp_path / "job.yaml"),
                "--provider",
                provider,
                "--set",
                f"name={name}",
                "--no-eval",
                env=env,
            )
            assert done.returncode == 0, f"{provider}:\n{done.stdout}\n{done.stderr}"
        yield env, tmp_path


def test_eval_and_report_compare_a_local_and_a_hosted_fine_tune(trained):  # type: ignore[no-untyped-def]
    env, folder = trained
    test = str(folder / "test.jsonl")
    # the same command for both models: each is called through its own backend
    for model in ("rev-local@1", "rev-openai@1"):
        done = run_anytune(
            "eval", model, "--data", test, "--metrics", "exact_match,token_f1,rouge_l", env=env
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "held-out evaluation (12 examples" in done.stdout and model in done.stdout
    together = run_anytune(
        "eval", "rev-local@1", "rev-openai@1", "--data", test, "--json", env=env, check=True
    )
    import json

    result = json.loads(together.stdout)
    assert [s["subject"] for s in result["subjects"]] == ["base", "rev-local@1", "rev-openai@1"]
    assert {c["b"] for c in result["comparisons"]} == {"rev-local@1", "rev-openai@1"}
    # the emulator answers with its nearest training example's answer: its fine-tune scores on held-out data
    assert all(0 <= s["metrics"]["exact_match"] <= 1 and "exact_match" in s["ci"] for s in result["subjects"])

    out = folder / "report"
    done = run_anytune("report", "rev-local@1", "rev-openai@1", "--out", str(out), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    html = (out / "report.html").read_text()
    for needle in (
        "rev-local@1",
        "rev-openai@1",
        "Head to head",
        "Cost and quality",
        "95% bootstrap interval",
    ):
        assert needle in html, needle
    assert re.search(r"cost</th><td>[0-9.]+ USD \((actual|quoted)\)", html)  # each model's cost beside it
    md = (out / "report.md").read_text()
    assert "![loss.png](loss.png)" in md and "| exact_match |" in md

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package)")
    images = rendered_images(out / "report.html", folder)
    assert {i["src"] for i in images} == {"loss.png", "metrics.png", "cost_quality.png"}
    assert all(i["ok"] and i["w"] > 300 and i["h"] > 200 for i in images), images


def test_alias_moves_across_processes_and_versions_stay(trained):  # type: ignore[no-untyped-def]
    env, _folder = trained
    promoted = run_anytune("models", "promote", "rev-local@1", "--alias", "production", env=env, check=True)
    assert "rev-local@production → rev-local@1" in promoted.stdout
    shown = run_anytune("models", "show", "rev-local@production", "--json", env=env, check=True)
    import json

    seen = json.loads(shown.stdout)
    assert seen["version"] == 1 and "production" in seen["aliases"]
    assert seen["provider"] == "local" and seen["dataset_fingerprint"].startswith("sha256:")


def test_serve_answers_the_openai_sdk_like_the_backend_does(trained):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    env, _folder = trained
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "anytune",
            "serve",
            "rev-local@1",
            "--port",
            str(port),
            "--api-key",
            "sk-local",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-local", max_retries=0)
        deadline = time.monotonic() + 120
        while True:
            try:
                models = client.models.list()
                break
            except Exception:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "the server never came up"
                time.sleep(0.5)
        assert [m.id for m in models] == ["rev-local@1"]
        question = [{"role": "user", "content": "Reverse: m o t a"}]
        answer = client.chat.completions.create(model="rev-local@1", messages=question, max_tokens=16)
        assert answer.choices[0].finish_reason == "stop" and answer.model == "rev-local@1"
        # the served answer is the backend's own greedy answer for the same prompt
        import os

        from anytune.client import Client
        from anytune.hookspecs import GenerationParams

        old = os.environ.get("ANYTUNE_HOME")
        os.environ["ANYTUNE_HOME"] = env["ANYTUNE_HOME"]
        try:
            target = Client().resolve_target("rev-local@1")
            from anytune_local.backend import LocalBackend

            direct = LocalBackend().generate(
                target.artifact, [question], GenerationParams(max_new_tokens=16)
            )[0]
        finally:
            if old is None:
                os.environ.pop("ANYTUNE_HOME", None)
            else:
                os.environ["ANYTUNE_HOME"] = old
        assert answer.choices[0].message.content == direct
        wrong_key = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="nope", max_retries=0)
        import openai

        with pytest.raises(openai.AuthenticationError):
            wrong_key.chat.completions.create(model="rev-local@1", messages=question)
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_export_merges_the_adapter_into_weights_that_answer_the_same(trained):  # type: ignore[no-untyped-def]
    env, folder = trained
    out = folder / "merged"
    done = run_anytune("export", "rev-local@1", "--out", str(out), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert not (out / "adapter_config.json").exists()
    assert re.search(r"registered as rev-local@\d+", done.stdout)

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    registered = run_anytune("models", "show", "rev-local@1", "--json", env=env, check=True)
    import json

    adapter = json.loads(registered.stdout)["artifact"]
    base = AutoModelForCausalLM.from_pretrained(adapter["metadata"]["base_model_path"], dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, adapter["path"]).eval()
    merged = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 9, 42, 7, 3]])
    with torch.no_grad():
        assert torch.allclose(tuned(ids).logits, merged(ids).logits, atol=1e-4)


def test_eval_loss_and_perplexity_fall_after_training(trained):  # type: ignore[no-untyped-def]
    import json

    env, folder = trained
    done = run_anytune(
        "eval",
        "rev-local@1",
        "--data",
        str(folder / "test.jsonl"),
        "--metrics",
        "eval_loss,perplexity",
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    base, tuned = result["subjects"]
    assert tuned["metrics"]["eval_loss"] < base["metrics"]["eval_loss"]
    assert tuned["metrics"]["perplexity"] < base["metrics"]["perplexity"]
    import math

    assert math.isclose(tuned["metrics"]["perplexity"], math.exp(tuned["metrics"]["eval_loss"]), rel_tol=0.5)
    [loss] = [c for c in result["comparisons"] if c["metric"] == "eval_loss"]
    assert loss["delta"] < 0 and loss["wins"] > loss["losses"]  # a lower loss is a win
    # OpenAI gives no token probabilities: the same metric says so instead of inventing a number
    refused = run_anytune(
        "eval", "rev-openai@1", "--data", str(folder / "test.jsonl"), "--metrics", "eval_loss", env=env
    )
    assert refused.returncode != 0 and "cannot compute the loss" in refused.stderr
