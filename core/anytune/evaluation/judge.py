"""A pairwise LLM judge: any backend's model reads two answers to the same request and says which is better.

Judges favour the answer they read first (Zheng et al. 2023, "Judging LLM-as-a-Judge"), so every pair is
judged twice with the answers swapped; only a verdict that survives the swap counts, anything else is a tie.
The reference answer is shown to the judge as a guide.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from anytune.hookspecs import Backend, GenerationParams, Messages
from anytune.jobs import ModelArtifact

JUDGE_PROMPT = """You compare two answers to the same request and decide which one is better: more correct, \
more complete, and closer to the reference answer.

Request:
{prompt}

Reference answer:
{reference}

Answer A:
{a}

Answer B:
{b}

Reply with exactly one word: A, B or TIE."""

_VERDICT = re.compile(r"\b(A|B|TIE)\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    found = _VERDICT.search(text.strip())
    return found.group(1).upper() if found else None


def judge_pairs(
    backend: Backend,
    judge: ModelArtifact,
    prompts: Sequence[str],
    references: Sequence[str],
    answers_a: Sequence[str],
    answers_b: Sequence[str],
    *,
    batch_size: int = 16,
) -> tuple[list[float], int]:
    """Per example: 1.0 if B is better, -1.0 if A is, 0.0 for a tie; and how many verdicts were unreadable."""
    asks: list[Messages] = []
    for prompt, ref, a, b in zip(prompts, references, answers_a, answers_b, strict=True):
        for first, second in ((a, b), (b, a)):
            content = JUDGE_PROMPT.format(prompt=prompt, reference=ref, a=first, b=second)
            asks.append([{"role": "user", "content": content}])
    replies = backend.generate(judge, asks, GenerationParams(max_new_tokens=8, batch_size=batch_size))
    scores: list[float] = []
    unreadable = 0
    for i in range(0, len(replies), 2):
        straight, swapped = parse_verdict(replies[i]), parse_verdict(replies[i + 1])
        unreadable += (straight is None) + (swapped is None)
        if straight == "B" and swapped == "A":
            scores.append(1.0)
        elif straight == "A" and swapped == "B":
            scores.append(-1.0)
        else:
            scores.append(0.0)
    return scores, unreadable
