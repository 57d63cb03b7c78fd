"""How the emulators' "models" answer chat completions: deterministically, and in a way that rewards
fine-tuning. A fine-tuned model answers with the answer of its most similar training prompt (word overlap);
a base model answers with a fixed sentence. Good enough to tell a fine-tune from its base in an A/B."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from anytune.data.records import content_text


def _words(text: str) -> set[str]:
    return set(re.sub(r"\s+", " ", text).strip().casefold().split())


def _pair(record: dict[str, Any]) -> tuple[str, str] | None:
    """(last user text, answer) of a training record in chat, prompt/completion, text or preference form."""
    if "messages" in record or "input" in record:
        messages = record.get("messages") or record.get("input", {}).get("messages", [])
        users = [m for m in messages if m.get("role") == "user"]
        answers = record.get("preferred_output") or [m for m in messages if m.get("role") == "assistant"]
        reference = record.get("reference") or record.get("ground_truth") or record.get("reference_answer")
        if users and not answers and reference is not None:  # an RFT line: the prompt, and its answer apart
            answers = [{"content": reference.get("reference") if isinstance(reference, dict) else reference}]
        if users and answers:
            return content_text(users[-1].get("content")), content_text(answers[-1].get("content"))
        return None
    if "prompt" in record and "completion" in record:
        return str(record["prompt"]), str(record["completion"])
    return None


def nearest_answer(records: Iterable[dict[str, Any]], messages: list[dict[str, Any]]) -> str:
    question = _words(content_text(messages[-1].get("content")) if messages else "")
    best, best_score = "", -1.0
    for record in records:
        pair = _pair(record)
        if pair is None:
            continue
        prompt = _words(pair[0])
        score = len(question & prompt) / max(1, len(question | prompt))
        if score > best_score:
            best, best_score = pair[1], score
    return best


def base_answer(model: str) -> str:
    return f"This is a reply from {model}."


def practice_answers(references: list[str], step: int, total: int, base: str) -> list[str]:
    """What an emulated policy answers at `step` of `total` of a reinforcement fine-tuning run: each prompt's
    own reference answer for a share step/total of the prompts (which ones is fixed by the prompt and the
    step), the base model's sentence for the rest. A grader that rewards the reference sees the reward rise,
    as it should in a run that learns; the emulators score these answers with the job's real grader."""
    import hashlib

    answers = []
    for i, reference in enumerate(references):
        draw = int(hashlib.sha1(f"{i}:{step}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        answers.append(reference if draw < step / max(1, total) else base)
    return answers
