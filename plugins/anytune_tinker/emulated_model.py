"""The model behind the Tinker emulator: a real small causal LM on CPU with a LoRA adapter (peft), so that
`forward_backward` computes a real loss and real gradients, `optim_step` really moves the weights (Adam with
the request's parameters), a saved state restores exactly, and sampling really samples.

Tinker's losses are per-token and summed: `cross_entropy` is -sum(weights * logprob(target)), reported as
`loss:sum` with each datum's target logprobs; `importance_sampling` is -sum(ratio * advantage) with
ratio = exp(logprob - sampling logprob). Gradients accumulate across forward_backward calls until an
optim_step applies and clears them, as on the service.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Counters:
    """Tokens the emulated service has processed, by kind: what it would bill."""

    train: int = 0
    prefill: int = 0
    sample: int = 0


@dataclass
class TrainingRun:
    """One training client's model: its base, its LoRA adapter, its optimizer and what it has done."""

    model_id: str
    base_model: str
    rank: int
    model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    optimizer: Any = field(default=None, repr=False)
    steps: int = 0  # optimizer steps applied
    pending_backward: int = 0  # forward_backward calls since the last optim_step
    applied: list[int] = field(default_factory=list)  # the seq_id of every optim_step applied, in order
    # the optimizer steps in this run's weights, by their number in the whole training: those of the state it
    # was restored from, then its own (a step lost in a crash is in no later state's lineage)
    lineage: list[int] = field(default_factory=list)
    lora: dict[str, Any] = field(default_factory=dict)  # where the adapters are (Tinker's LoraConfig)

    def parameters(self) -> list[Any]:
        return [p for p in self.model.parameters() if p.requires_grad]


def warm_imports() -> None:
    import peft  # noqa: F401
    import transformers

    _ = transformers.AutoModelForCausalLM, transformers.AutoTokenizer, transformers.AutoModel


ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def load_run(
    model_id: str,
    base_model: str,
    path: str | Path,
    rank: int,
    seed: int | None,
    lora: dict[str, Any] | None = None,
) -> TrainingRun:
    """A LoRA run where Tinker's `LoraConfig` puts adapters: attention, MLP and the unembedding (each on by
    default, as in the SDK)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed if seed is not None else 0)  # the same run, the same adapter
    base = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    lora = lora or {}
    targets = [
        *(ATTENTION if lora.get("train_attn", True) else ()),
        *(MLP if lora.get("train_mlp", True) else ()),
        *(("lm_head",) if lora.get("train_unembed", True) else ()),
    ]
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, lora_dropout=0.0)
    model = get_peft_model(base, config)
    model.train()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    kept = {k: bool(lora.get(k, True)) for k in ("train_attn", "train_mlp", "train_unembed")}
    return TrainingRun(model_id, base_model, rank, model, tokenizer, lora=kept)


def _tokens_of(datum: dict[str, Any]) -> list[int]:
    return [t for chunk in datum["model_input"] for t in chunk]


def forward_backward(
    run: TrainingRun, data: list[dict[str, Any]], loss_fn: str, backward: bool, counters: Counters
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per datum: its target tokens' logprobs; and the summed loss. Gradients accumulate when `backward`."""
    import torch

    outputs: list[dict[str, Any]] = []
    total = torch.zeros(())
    weight_sum = 0.0
    for datum in data:
        tokens = _tokens_of(datum)
        inputs = datum["loss_fn_inputs"]
        targets = torch.tensor(inputs["target_tokens"], dtype=torch.long).reshape(-1)
        ids = torch.tensor([tokens], dtype=torch.long)
        with torch.set_grad_enabled(backward):
            logits = run.model(input_ids=ids).logits[0].float()
            logprobs = (
                torch.log_softmax(logits, dim=-1).gather(1, targets[: len(tokens)].unsqueeze(1)).squeeze(1)
            )
            if loss_fn == "cross_entropy":
                weights = torch.tensor(
                    inputs.get("weights", [1.0] * len(tokens)), dtype=torch.float32
                ).reshape(-1)
                loss = -(weights[: len(tokens)] * logprobs).sum()
                weight_sum += float(weights.sum())
            elif loss_fn == "importance_sampling":
                old = torch.tensor(inputs["logprobs"], dtype=torch.float32).reshape(-1)[: len(tokens)]
                advantages = torch.tensor(inputs["advantages"], dtype=torch.float32).reshape(-1)[
                    : len(tokens)
                ]
                loss = -(torch.exp(logprobs - old) * advantages).sum()
            else:
                raise ValueError(f"loss function {loss_fn!r} is not one this emulator runs")
            if backward:
                loss.backward()
        total = total + loss.detach()
        counters.train += len(tokens)
        outputs.append({"logprobs": logprobs.detach().tolist()})
    if backward:
        run.pending_backward += 1
    metrics = {"loss:sum": float(total)}
    if weight_sum:
        metrics["loss:mean"] = float(total) / weight_sum
    return outputs, metrics


def optim_step(run: TrainingRun, params: dict[str, Any], seq_id: int | None) -> dict[str, float]:
    """Adam with the request's parameters over the accumulated gradients; the gradients are then cleared."""
    import torch

    lr = float(params.get("learning_rate", 1e-4))
    betas = (float(params.get("beta1", 0.9)), float(params.get("beta2", 0.95)))
    eps, decay = float(params.get("eps", 1e-12)), float(params.get("weight_decay", 0.0))
    if run.optimizer is None:
        run.optimizer = torch.optim.AdamW(run.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=decay)
    for group in run.optimizer.param_groups:
        group.update(lr=lr, betas=betas, eps=eps, weight_decay=decay)
    clip = float(params.get("grad_clip_norm", 0.0))
    norm = torch.nn.utils.clip_grad_norm_(run.parameters(), clip if clip > 0 else float("inf"))
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.steps += 1
    run.pending_backward = 0
    run.applied.append(int(seq_id or 0))
    run.lineage.append(run.steps)
    return {"grad_norm:mean": float(norm), "step": float(run.steps)}


def snapshot(run: TrainingRun) -> dict[str, Any]:
    """Everything a saved state restores: the adapter's weights, the optimizer's state, the step count."""
    from peft import get_peft_model_state_dict

    weights = {k: v.detach().clone() for k, v in get_peft_model_state_dict(run.model).items()}
    optimizer = copy.deepcopy(run.optimizer.state_dict()) if run.optimizer is not None else None
    return {
        "weights": weights,
        "optimizer": optimizer,
        "steps": run.steps,
        "applied": list(run.applied),
        "lineage": list(run.lineage),
        "base_model": run.base_model,
        "rank": run.rank,
        "lora": dict(run.lora),
    }


def restore(run: TrainingRun, state: dict[str, Any], with_optimizer: bool = True) -> None:
    import torch
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(run.model, state["weights"])
    if with_optimizer and state.get("optimizer") is not None:
        run.optimizer = torch.optim.AdamW(run.parameters())
        run.optimizer.load_state_dict(state["optimizer"])
        run.steps, run.applied = int(state["steps"]), list(state["applied"])
        run.lineage = list(state.get("lineage", []))


def sample(
    run: TrainingRun, prompt: list[int], params: dict[str, Any], num_samples: int, counters: Counters
) -> list[tuple[list[int], list[float], str]]:
    """`num_samples` continuations of `prompt`: (tokens, their logprobs, stop reason). Seeded by the request's
    seed, else by the prompt: the same request gives the same answers."""
    import torch

    seed = params.get("seed")
    if seed is None:
        seed = int(hashlib.sha1(str(prompt).encode()).hexdigest()[:8], 16)
    generator = torch.Generator().manual_seed(int(seed))
    max_tokens = int(params.get("max_tokens") or 16)
    temperature = float(params.get("temperature", 1.0))
    eos = run.tokenizer.eos_token_id
    stops = set(params.get("stop_tokens") or ([] if eos is None else [eos]))
    run.model.eval()
    ids = torch.tensor([list(prompt)] * num_samples)
    done = [False] * num_samples
    out: list[tuple[list[int], list[float], str]] = [([], [], "length") for _ in range(num_samples)]
    counters.prefill += len(prompt) * num_samples
    with torch.no_grad():  # the samples side by side: one forward pass per token for all of them
        for _ in range(max_tokens):
            logits = run.model(input_ids=ids).logits[:, -1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            if temperature > 0:
                picked = torch.multinomial(
                    torch.softmax(logits / temperature, dim=-1), 1, generator=generator
                )
            else:
                picked = logits.argmax(dim=-1, keepdim=True)
            ids = torch.cat([ids, picked], dim=1)
            for i, token in enumerate(picked[:, 0].tolist()):
                if done[i]:
                    continue
                out[i][0].append(int(token))
                out[i][1].append(float(logprobs[i, token]))
                counters.sample += 1
                if token in stops:
                    done[i] = True
                    out[i] = (out[i][0], out[i][1], "stop")
            if all(done):
                break
    run.model.train()
    return out
