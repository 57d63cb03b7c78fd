"""One reinforcement step of a Tinker loop (`method: rft`): the policy's current weights answer each prompt
`samples_per_prompt` times through a sampling client, anytune's grader scores every answer (the same code as
`anytune grade` and the evaluation metric), each answer's advantage is its reward less its group's mean
(divided by the group's spread), and one `forward_backward` with Tinker's `importance_sampling` loss over the
sampled tokens (their sampling logprobs as the behaviour policy's) precedes the step's `optim_step`.
A group whose answers all score the same teaches nothing and is left out of the step."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

from anytune_tinker.render import answer_text, encode, prompt_text, stop_tokens

DEFAULT_SAMPLES = 4
DEFAULT_ANSWER_TOKENS = 16


@dataclass
class Prompt:
    tokens: list[int]
    item: dict[str, Any]


def prompts(path: str, tokenizer: Any) -> list[Prompt]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                out.append(Prompt(encode(tokenizer, prompt_text(tokenizer, row["messages"])), row["item"]))
    return out


@dataclass
class StepOutcome:
    datums: list[Any]
    rewards: list[float]
    prefill: int
    sampled: int


def rollouts(
    trainer: Any, tokenizer: Any, grader: Any, batch: list[Prompt], method: Any, seed: int
) -> StepOutcome:
    """Sample, grade and turn into importance-sampling datums the answers to one batch of prompts."""
    from tinker import types

    sampler = trainer.save_weights_and_get_sampling_client()
    n = int(getattr(method, "samples_per_prompt", None) or DEFAULT_SAMPLES)
    params = types.SamplingParams(
        max_tokens=int(getattr(method, "max_completion_tokens", None) or DEFAULT_ANSWER_TOKENS),
        temperature=float(getattr(method, "temperature", None) or 1.0),
        stop=stop_tokens(tokenizer),
        seed=seed,
    )
    futures = [
        sampler.sample(prompt=types.ModelInput.from_ints(p.tokens), num_samples=n, sampling_params=params)
        for p in batch
    ]
    datums, rewards, prefill, sampled = [], [], 0, 0
    for prompt, future in zip(batch, futures, strict=True):
        sequences = future.result().sequences
        prefill += len(prompt.tokens) * len(sequences)
        scores = []
        for seq in sequences:
            sampled += len(seq.tokens)
            try:
                scores.append(grader.score(answer_text(tokenizer, seq.tokens), prompt.item))
            except Exception:  # an answer the grader cannot score (odd output) earns nothing
                scores.append(0.0)
        rewards += scores
        spread = statistics.pstdev(scores)
        if spread == 0:
            continue
        mean = statistics.fmean(scores)
        for seq, score in zip(sequences, scores, strict=True):
            if not seq.tokens:
                continue
            advantage = (score - mean) / (spread + 1e-6)
            full = prompt.tokens + list(seq.tokens)
            before = len(prompt.tokens) - 1
            datums.append(
                types.Datum(
                    model_input=types.ModelInput.from_ints(full[:-1]),
                    loss_fn_inputs={
                        "target_tokens": full[1:],
                        "logprobs": [0.0] * before + list(seq.logprobs),
                        "advantages": [0.0] * before + [advantage] * len(seq.tokens),
                    },
                )
            )
    return StepOutcome(datums, rewards, prefill, sampled)
