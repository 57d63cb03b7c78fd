"""The `tinker` backend: a training API (Tinker, and the services that accept Tinker's SDK by base URL) where
the loop runs on anytune's side (`loop.py`, a process of its own started per job and followed through its job
folder, as the local trainer is): the service does each forward_backward, optim_step and sample; the loop
decides them, saves state, counts tokens and checks the budget.

Part 1 (issue 33): supervised fine-tuning with LoRA, durable state, evaluation through the sampling client.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from anytune.plugin import (
    CREDENTIALS,
    AdapterType,
    Backend,
    BackendError,
    Capabilities,
    DataBundle,
    DataFormat,
    GenerationParams,
    JobDir,
    JobSpec,
    JobStatus,
    Limits,
    Messages,
    Method,
    ModelArtifact,
    NotFoundError,
    PreparedData,
    Problem,
    ProviderRef,
    Quote,
    Snapshot,
    SubmitRequest,
    anytune_home,
    grader_leaves,
    token_priced,
)
from anytune_tinker.prepare import prepare

STATES: dict[str, JobStatus] = {
    "starting": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "succeeded": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
    "stopped": JobStatus.CANCELLED,  # at the budget, state saved
}
OPTIONS = frozenset({"base_model", "base_url", "api_key_env", "tokenizer", "save_every", "resume_from"})


class TinkerBackend(Backend):
    name: ClassVar[str] = "tinker"
    secrets: ClassVar[tuple[str, ...]] = ("TINKER_API_KEY",)

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self._procs: dict[str, Any] = {}

    @property
    def root(self) -> Path:
        return self._root or anytune_home() / "tinker" / "jobs"

    def _jobdir(self, ref: ProviderRef) -> JobDir:
        return JobDir(ref.data.get("dir") or self.root / ref.id)

    def capabilities(self) -> Capabilities:
        return Capabilities(
            methods=frozenset({Method.SFT, Method.RFT}),
            adapters=frozenset({AdapterType.LORA}),
            data_formats=frozenset({DataFormat.CHAT, DataFormat.INSTRUCTION, DataFormat.COMPLETION}),
            hyperparameters=frozenset({"epochs", "batch_size", "learning_rate", "max_steps", "seed"}),
            base_models=None,  # the service says which it serves
            limits=Limits(min_examples=1),
            supports_cancel=True,
            supports_resume=True,
            notes=[
                "the training loop runs here, the steps on the service; state saved every "
                "provider_options.tinker.save_every steps (20)",
                "provider_options.tinker: base_url, api_key_env, tokenizer, save_every",
            ],
        )

    def check_spec(self, spec: JobSpec) -> list[Problem]:
        problems: list[Problem] = []
        options = spec.options_for(self.name)
        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            problems.append(
                Problem(
                    "error",
                    f"provider_options.{self.name}",
                    f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}",
                )
            )
        variable = str(options.get("api_key_env") or "TINKER_API_KEY")
        key = os.environ.get(variable, "")
        if not key:
            problems.append(Problem("error", CREDENTIALS, f"no Tinker API key: set {variable}"))
        elif not key.startswith(("tml-", "eyJ")):
            problems.append(
                Problem("error", CREDENTIALS, f"{variable} must start with 'tml-' (the SDK's rule)")
            )
        if spec.method_type is Method.RFT:
            problems += [
                Problem(
                    "error",
                    "method.grader",
                    f"the tinker loop cannot run the model_judge grader {name!r} yet (no judge to call while it "
                    "trains): use a string_check, text_similarity or python grader",
                )
                for name, leaf in grader_leaves(spec.method.grader)
                if leaf.type == "model_judge"
            ]
        if spec.adapter.type == "lora" and not 1 <= spec.adapter.r <= 128:
            problems.append(Problem("error", "adapter.r", "Tinker trains LoRA ranks from 1 to 128"))
        return problems

    def prepare(self, spec: JobSpec, data: DataBundle) -> PreparedData:
        return prepare(self.name, spec, data)

    def quote(self, spec: JobSpec, prepared: PreparedData) -> Quote:
        epochs = float(spec.hyperparameters.epochs or 1)
        train = prepared.tokens["train"]
        return token_priced(
            self.name,
            spec,
            model=spec.model_for(self.name),
            count=train,
            multiplier=epochs,
            rule=f"training tokens = {train.tokens:,} x {epochs:g} epoch(s); the loop counts and checks each step",
            tier="train",
        )

    # ------------------------------------------------------------------------------------------ run

    def find_existing(self, request: SubmitRequest) -> ProviderRef | None:
        jobdir = JobDir(self.root / request.job_id)
        pid = jobdir.read_pid()
        if pid is None:
            return None
        return ProviderRef(provider=self.name, id=request.job_id, data={"dir": str(jobdir.path), "pid": pid})

    def submit(self, request: SubmitRequest) -> ProviderRef:
        existing = self.find_existing(request)
        if existing is not None:  # the loop was started before a crash: never start a second one
            return existing
        jobdir = JobDir(self.root / request.job_id)
        jobdir.create(request.model_dump(mode="json"))
        env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        proc = jobdir.start_worker([sys.executable, "-m", "anytune_tinker.loop", str(jobdir.path)], env)
        self._procs[request.job_id] = proc
        return ProviderRef(
            provider=self.name, id=request.job_id, data={"dir": str(jobdir.path), "pid": proc.pid}
        )

    def _running(self, ref: ProviderRef, jobdir: JobDir) -> bool:
        return jobdir.worker_alive(self._procs.get(ref.id))

    def poll(self, ref: ProviderRef, cursor: str | None = None) -> Snapshot:
        jobdir = self._jobdir(ref)
        if not jobdir.path.exists():
            raise NotFoundError(f"tinker job folder {jobdir.path} is gone")
        status = jobdir.fail_if_gone(self._running(ref, jobdir))
        events, metrics, offset = jobdir.events_since(cursor)
        neutral = STATES.get(status["state"], JobStatus.RUNNING)
        step, total = status.get("step"), status.get("total_steps")
        result = jobdir.read_json("result.json") if neutral is JobStatus.SUCCEEDED else None
        return Snapshot(
            status=neutral,
            provider_status=status["state"],
            progress=1.0 if result else (min(1.0, step / total) if step is not None and total else None),
            metrics=metrics,
            events=events,
            cursor=offset,
            error=status.get("error"),
            step=step,
            total_steps=total,
            trained_tokens=result.get("trained_tokens") if result else None,
            cost=status.get("cost"),
            poll_after=1.0,
        )

    def cancel(self, ref: ProviderRef) -> None:
        jobdir = self._jobdir(ref)
        if not STATES.get(jobdir.read_status()["state"], JobStatus.RUNNING).active:
            return
        jobdir.cancel_file.touch()  # the loop stops between steps, its state saved
        jobdir.stop_worker(lambda: self._running(ref, jobdir))
        if STATES.get(jobdir.read_status()["state"], JobStatus.RUNNING).active:
            jobdir.write_status("cancelled")

    def resume_point(self, ref: ProviderRef) -> str | None:
        """The last state the loop saved (a `tinker://` path): a failed, cancelled or stopped job goes on from
        there as a new job (`anytune jobs resume`), with none of its saved steps applied again."""
        state = self._jobdir(ref).read_json("loop.json") or {}
        return state.get("saved")

    def result(self, ref: ProviderRef) -> ModelArtifact:
        result = self._jobdir(ref).read_json("result.json")
        if not result:
            raise BackendError(f"tinker job {ref.id} left no model")
        return ModelArtifact(
            provider=self.name,
            model_id=str(result["model_path"]),
            kind="provider_model",
            base_model=str(result["base_model"]),
            adapter_type="lora",
            metadata={
                k: result[k]
                for k in ("state_path", "steps", "trained_tokens", "cost", "tokenizer")
                if result.get(k)
            },
        )

    # ------------------------------------------------------------------------------------- generate

    def generate(self, model: ModelArtifact, prompts: list[Messages], params: GenerationParams) -> list[str]:
        import tinker
        from tinker import types
        from transformers import AutoTokenizer

        from anytune_tinker.render import answer_text, encode, prompt_text, stop_tokens

        with tinker.ServiceClient() as service:  # closed after: its session's heartbeats stop
            if model.kind == "base":
                sampler = service.create_sampling_client(base_model=model.base_model).result()
            else:
                sampler = service.create_sampling_client(model_path=model.model_id).result()
            named = model.metadata.get("tokenizer") or (
                model.base_model if Path(model.base_model).is_dir() else None
            )
            tokenizer = AutoTokenizer.from_pretrained(str(named)) if named else sampler.get_tokenizer()
            settings = types.SamplingParams(
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                stop=stop_tokens(tokenizer),
                seed=0,
            )
            futures = [
                sampler.sample(
                    prompt=types.ModelInput.from_ints(encode(tokenizer, prompt_text(tokenizer, messages))),
                    num_samples=1,
                    sampling_params=settings,
                )
                for messages in prompts
            ]
            return [answer_text(tokenizer, future.result().sequences[0].tokens) for future in futures]
