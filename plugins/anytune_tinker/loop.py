"""The training loop of a `tinker` job, run where anytune runs the job (`python -m anytune_tinker.loop DIR`,
started by the backend): the service does each step, this process decides them.

SFT: the job's chats rendered with the base model's template and tokenized (`render.training_example`:
weight 1 on the answer, 0 on the prompt), batched in an order fixed by the seed, one `forward_backward`
(`cross_entropy`) and one `optim_step` per batch, the learning rate decayed linearly from the job's rate.

Durable: the state (adapter, optimizer, step) is saved every `save_every` steps and at the end, its path kept
in `loop.json` and told as an event; a loop started again on the same folder goes on from the last saved state
(`create_training_client_from_state_with_optimizer`), so no saved step is ever applied twice. Every step's
tokens are counted and priced from the catalog; with a `budget_usd`, a step that would cross it is not taken:
the state is saved and the job stops there. A cancel (SIGTERM, or the cancel file) stops it between steps,
saved.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

from anytune.plugin import JobDir, JobSpec, token_cost

STATE = "loop.json"
DEFAULT_SAVE_EVERY = 20
DEFAULT_LR = 1e-4
DEFAULT_BATCH = 8


class Stop(Exception):
    """The loop stops cleanly here (cancel, budget): its state is saved first."""

    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state, self.message = state, message


def _service(spec: JobSpec) -> Any:
    import tinker

    options = spec.options_for("tinker")
    return tinker.ServiceClient(
        base_url=options.get("base_url") or os.environ.get("TINKER_BASE_URL") or None,
        api_key=os.environ.get(str(options.get("api_key_env") or "TINKER_API_KEY")),
    )


def _tokenizer(spec: JobSpec, trainer: Any) -> Any:
    """The base model's tokenizer: `provider_options.tinker.tokenizer` (a folder or hub id), a local folder
    named by the base model, else the one the service names (the SDK fetches it from the hub)."""
    named = spec.options_for("tinker").get("tokenizer")
    base = spec.model_for("tinker")
    if named or Path(base).is_dir():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(named or base))
    return trainer.get_tokenizer()


def _examples(path: str, tokenizer: Any) -> list[tuple[list[int], list[float]]]:
    from anytune_tinker.render import training_example

    with open(path, encoding="utf-8") as fh:
        return [training_example(tokenizer, json.loads(line)["messages"]) for line in fh if line.strip()]


def _datum(tokens: list[int], weights: list[float]) -> Any:
    from tinker import types

    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights[1:]},
    )


def plan(spec: JobSpec, count: int) -> tuple[int, int]:
    """(batch size, optimizer steps) of the whole run."""
    hp = spec.hyperparameters
    batch = max(1, min(int(hp.batch_size or DEFAULT_BATCH), count))
    per_epoch = math.ceil(count / batch)
    steps = int(hp.max_steps) if hp.max_steps else per_epoch * math.ceil(hp.epochs or 1)
    return batch, steps


def step_of(path: str) -> int:
    """The optimizer step a saved state holds, from its name (`.../weights/step-000012-r1`)."""
    import re

    found = re.search(r"step-(\d+)", path.rsplit("/", 1)[-1])
    if not found:
        raise ValueError(f"{path} is not a state this loop saved (step-NNNNNN-rN)")
    return int(found.group(1))


def _batch(examples: list[Any], batch: int, step: int, seed: int) -> list[Any]:
    """The examples of optimizer step `step`: each epoch a fresh order, fixed by the seed."""
    per_epoch = math.ceil(len(examples) / batch)
    epoch, index = divmod(step, per_epoch)
    order = list(range(len(examples)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [examples[i] for i in order[index * batch : (index + 1) * batch]]


class Loop:
    def __init__(self, jobdir: JobDir) -> None:
        self.jobdir = jobdir
        request = jobdir.read_request()
        self.spec = JobSpec.model_validate(request["spec"])
        self.train_file = request["prepared"]["files"]["train"]["path"]
        self.state: dict[str, Any] = jobdir.read_json(STATE) or {
            "step": 0,
            "cost": 0.0,
            "tokens": 0,
            "runs": 0,
        }
        self.stopping: str | None = None
        self.service: Any = None

    def price(self, tokens: int) -> float | None:
        return token_cost("tinker", tokens, model=self.spec.model_for("tinker"), tier="train")

    def save(self, trainer: Any, step: int) -> None:
        name = f"step-{step:06d}-r{self.state['runs']}"  # a new name per start: a re-save never collides
        path = trainer.save_state(name).result().path
        self.state.update(saved=path, saved_step=step)
        self.jobdir.write_json(STATE, self.state)
        self.jobdir.emit(f"state saved at step {step}: {path}", kind="log", path=path, step=step)

    def start(self) -> Any:
        service = self.service = _service(self.spec)
        self.state["runs"] += 1
        carried = self.spec.options_for("tinker").get("resume_from")  # a job resumed from an earlier one
        if carried and not self.state.get("saved"):
            self.state.update(
                saved=str(carried), saved_step=step_of(str(carried)), step=step_of(str(carried))
            )
        saved = self.state.get("saved")
        if saved:
            trainer = service.create_training_client_from_state_with_optimizer(saved).result()
            self.state["step"] = int(self.state["saved_step"])
            self.jobdir.emit(f"resumed from {saved} at step {self.state['step']}", kind="status")
        else:
            base = self.spec.model_for("tinker")
            trainer = service.create_lora_training_client(base_model=base, rank=self.spec.adapter.r).result()
        self.jobdir.write_json(STATE, self.state)
        return trainer

    def check(self, trainer: Any, step: int, cost: float | None) -> None:
        """Stop before a step that is cancelled or would cross the budget; save first."""
        budget = self.spec.budget_usd
        if self.stopping or self.jobdir.cancel_file.exists():
            raise Stop("cancelled", f"cancelled before step {step + 1}")
        if budget is not None and cost is not None and self.state["cost"] + cost > budget:
            raise Stop(
                "stopped",
                f"budget: step {step + 1} would bring the cost to {self.state['cost'] + cost:.4f} USD, over "
                f"budget_usd {budget:g}; state saved at step {step} (raise the budget and resume)",
            )

    def price_tier(self, tokens: int, tier: str) -> float:
        return token_cost("tinker", tokens, model=self.spec.model_for("tinker"), tier=tier) or 0.0

    def sft_step(self, trainer: Any, chosen: list[Any], rate: float, step: int) -> dict[str, float]:
        from tinker import types

        tokens = sum(len(t) - 1 for t, _ in chosen)  # the model input sent: all but the last token
        self.check(trainer, step, self.price(tokens))
        forward = trainer.forward_backward([_datum(t, w) for t, w in chosen], "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=rate)).result()
        weight = sum(sum(w[1:]) for _, w in chosen) or 1.0
        loss = forward.result().metrics["loss:sum"] / weight
        return {"loss": loss, "tokens": tokens, "cost": self.price(tokens) or 0.0}

    def rl_step(self, trainer: Any, chosen: list[Any], rate: float, step: int) -> dict[str, float]:
        """Sample, grade, learn: the step's cost is known once it is sampled, so the budget is checked
        against the previous step's cost before sampling, and against this one before training."""
        from tinker import types

        from anytune_tinker.rl import rollouts

        self.check(trainer, step, self.state.get("last_cost"))
        outcome = rollouts(trainer, self.tokenizer, self.grader, chosen, self.spec.method, step)
        train = sum(d.model_input.length for d in outcome.datums)
        cost = (
            self.price_tier(outcome.prefill, "prefill")
            + self.price_tier(outcome.sampled, "sample")
            + self.price_tier(train, "train")
        )
        metrics = {
            "reward": sum(outcome.rewards) / max(1, len(outcome.rewards)),
            "tokens": train,
            "cost": cost,
        }
        if outcome.datums:
            forward = trainer.forward_backward(outcome.datums, "importance_sampling")
            trainer.optim_step(types.AdamParams(learning_rate=rate)).result()
            metrics["loss"] = forward.result().metrics["loss:sum"] / max(1, len(outcome.datums))
        self.state["last_cost"] = cost
        return metrics

    def run(self) -> None:
        trainer = self.start()
        self.tokenizer = _tokenizer(self.spec, trainer)
        rl = self.spec.method_type.value == "rft"
        if rl:
            from anytune.plugin import Grader, as_one
            from anytune_tinker.rl import prompts

            examples: list[Any] = prompts(self.train_file, self.tokenizer)
            self.grader = Grader(as_one(self.spec.method.grader))
        else:
            examples = _examples(self.train_file, self.tokenizer)
        batch, steps = plan(self.spec, len(examples))
        lr = float(self.spec.hyperparameters.learning_rate or DEFAULT_LR)
        save_every = int(self.spec.options_for("tinker").get("save_every") or DEFAULT_SAVE_EVERY)
        seed = int(self.spec.hyperparameters.seed or 0)
        self.jobdir.write_status("running", total_steps=steps, step=self.state["step"])
        try:
            for step in range(self.state["step"], steps):
                chosen = _batch(examples, batch, step, seed)
                rate = lr * (1 - step / steps)
                done = (self.rl_step if rl else self.sft_step)(trainer, chosen, rate, step)
                cost, tokens = done.pop("cost"), int(done.pop("tokens"))
                self.state.update(step=step + 1, cost=self.state["cost"] + cost)
                self.state["tokens"] += tokens
                self.jobdir.emit(
                    kind="metric", step=step + 1, total_steps=steps, learning_rate=rate, tokens=tokens, **done
                )
                self.jobdir.write_status("running", step=step + 1, total_steps=steps, cost=self.state["cost"])
                if (step + 1) % save_every == 0 or step + 1 == steps:
                    self.save(trainer, step + 1)
                else:
                    self.jobdir.write_json(STATE, self.state)
        except Stop as stop:
            if self.state.get("saved_step") != self.state["step"]:
                self.save(trainer, self.state["step"])
            self.jobdir.emit(stop.message, kind="status", level="warning")
            self.jobdir.write_status(stop.state, error=stop.message, cost=self.state["cost"])
            return
        sampler = trainer.save_weights_for_sampler(f"final-r{self.state['runs']}").result().path
        self.jobdir.write_json(
            "result.json",
            {
                "model_path": sampler,
                "state_path": self.state.get("saved"),
                "base_model": self.spec.model_for("tinker"),
                "steps": steps,
                "trained_tokens": self.state["tokens"],
                "cost": self.state["cost"],
                "tokenizer": self.spec.options_for("tinker").get("tokenizer"),
            },
        )
        self.jobdir.write_status("succeeded", cost=self.state["cost"], step=steps, total_steps=steps)


def main(argv: list[str]) -> int:
    jobdir = JobDir(argv[0])
    loop = Loop(jobdir)

    def stop(signum: int, _frame: Any) -> None:
        loop.stopping = "cancelled"

    signal.signal(signal.SIGTERM, stop)
    started = time.time()
    try:
        loop.run()
    except Exception as exc:  # the job's error, in its own words; the state saved so far stays
        message = f"{type(exc).__name__}: {exc}"
        jobdir.emit(message, kind="status", level="error")
        jobdir.write_status("failed", error=message)
        return 1
    finally:
        if loop.service is not None:  # end the session: its heartbeats stop with it
            try:
                loop.service.close(
                    "success" if jobdir.read_status()["state"] == "succeeded" else "errored"
                ).result(timeout=30)
            except Exception as exc:
                jobdir.emit(f"the session did not close cleanly: {exc}", kind="log", level="warning")
        jobdir.emit(f"loop exited after {time.time() - started:.1f} s", kind="log")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
