"""The local backend: each job is a worker process training with TRL + PEFT, followed through its folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from anytune.plugin import (
    AdapterType,
    Backend,
    BackendError,
    Capabilities,
    CapabilityError,
    DataFormat,
    GenerationParams,
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
    detect_hardware,
)
from anytune_local.jobdir import JobDir

# The worker's states (the "provider status" of a local job) and their neutral meaning.
STATES: dict[str, JobStatus] = {
    "starting": JobStatus.QUEUED,
    "loading": JobStatus.RUNNING,
    "training": JobStatus.RUNNING,
    "saving": JobStatus.RUNNING,
    "succeeded": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
}

HONOURED = frozenset(
    {
        "epochs",
        "max_steps",
        "learning_rate",
        "batch_size",
        "gradient_accumulation_steps",
        "lr_scheduler",
        "warmup_ratio",
        "warmup_steps",
        "weight_decay",
        "max_grad_norm",
        "max_seq_length",
        "seed",
        "early_stopping",
        "freeze",
    }
)


class LocalBackend(Backend):
    name: ClassVar[str] = "local"

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._loaded: tuple[tuple[str, str | None], Any, Any] | None = None

    @property
    def root(self) -> Path:
        return self._root or anytune_home() / "local" / "jobs"

    def _jobdir(self, ref: ProviderRef) -> JobDir:
        return JobDir(ref.data.get("dir") or self.root / ref.id)

    # ---------------------------------------------------------------------------------------- contract

    def capabilities(self) -> Capabilities:
        return Capabilities(
            methods=frozenset({Method.SFT, Method.CPT, Method.DPO, Method.REWARD, Method.GRPO, Method.RFT}),
            adapters=frozenset(AdapterType),
            data_formats=frozenset(
                {
                    DataFormat.CHAT,
                    DataFormat.INSTRUCTION,
                    DataFormat.COMPLETION,
                    DataFormat.TEXT,
                    DataFormat.PREFERENCE,
                    DataFormat.OPENAI_PREFERENCE,
                }
            ),
            hyperparameters=HONOURED,
            base_models=None,
            limits=Limits(min_examples=1),
            supports_cancel=True,
            supports_resume=True,
            supports_export=True,
            notes=[
                "any causal LM folder, .gguf file or hub id; `tiny` builds a small test model offline",
                "provider_options.local.merge: true also saves merged full weights (LoRA, DoRA, IA3)",
                "checkpoints every provider_options.local.checkpoint_steps steps (0: none); "
                "`anytune jobs resume` restarts a failed or cancelled job from the last one",
                "adapters: full (with hyperparameters.freeze), lora, dora, qlora (bitsandbytes; fp32 compute on "
                "CPU), prefix, prompt, p_tuning, ia3, llama_adapter (Llama-family), bottleneck (Houlsby/Pfeiffer)",
            ],
        )

    def check_spec(self, spec: JobSpec) -> list[Problem]:
        """What the worker would refuse, refused before the job is recorded: a base model that cannot be,
        a DPO loss TRL 1.16 does not have, GRPO reward functions that are missing or cannot be imported."""
        from anytune_local.models import check_model_name

        problems = []
        problem = check_model_name(spec.model_for(self.name))
        if problem:
            problems.append(Problem("error", "", problem))
        if spec.method_type is Method.PPO:
            problems.append(
                Problem(
                    "error",
                    "method",
                    "PPO is not offered: the installed TRL keeps its PPO trainer in trl.experimental; "
                    "for online RL use method grpo with reward functions",
                )
            )
        if spec.method_type is Method.DPO:
            from anytune_local.methods import dpo_loss

            try:
                dpo_loss(spec)
            except CapabilityError as exc:
                problems.append(Problem("error", "method.loss_type", exc.message))
        if spec.method_type is Method.RFT:
            from anytune_local.graders import refuse_unrunnable

            reason = refuse_unrunnable(spec.method)
            if reason:
                problems.append(Problem("error", "method.grader", reason))
        if spec.method_type is Method.GRPO:
            from anytune.plugin import UsageError
            from anytune_local.rewards import resolve_rewards

            try:
                resolve_rewards(spec.method.reward_functions)
            except UsageError as exc:
                hint = f" ({exc.hint})" if exc.hint else ""
                problems.append(Problem("error", "method.reward_functions", exc.message + hint))
        return problems

    def quote(self, spec: JobSpec, prepared: PreparedData) -> Quote:
        """Hours on the hardware named in `provider_options.local.hardware` (this machine's by default;
        `hf:a100` prices the same run on rented hardware), from measured runs or the throughput model,
        at the catalog's hourly price."""
        from anytune.plugin import hour_priced
        from anytune_local.quoting import count_tokens, epochs_of_data

        options = spec.options_for(self.name)
        chosen = options.get("hardware")
        where = str(chosen or detect_hardware())
        vendor, _, hardware = where.rpartition(":")
        name = spec.model_for(self.name)
        count, params = count_tokens(name, prepared.data.train)
        params_b = float(options["params_b"]) if options.get("params_b") else params
        multiplier, basis = epochs_of_data(count.examples, spec)
        return hour_priced(
            vendor or self.name,
            spec,
            model=name,
            hardware=hardware,
            count=count,
            multiplier=multiplier,
            params_b=params_b,
            measured_as=self.name,
            assumptions=[f"tokens trained = {count.tokens:,} tokens of the training data x {basis}"],
            strict=bool(chosen),
        )

    def resume_point(self, ref: ProviderRef) -> str | None:
        """The newest complete checkpoint folder of the job (`checkpoint-<step>` with its trainer state)."""
        folder = self._jobdir(ref).path / "checkpoints"
        done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
        if not done:
            return None
        return str(max(done, key=lambda p: int(p.name.rsplit("-", 1)[1])))

    def find_existing(self, request: SubmitRequest) -> ProviderRef | None:
        jobdir = JobDir(self.root / request.job_id)
        pid = jobdir.read_pid()
        if pid is None:  # never submitted, or recorded but its worker never started
            return None
        return ProviderRef(provider=self.name, id=request.job_id, data={"dir": str(jobdir.path), "pid": pid})

    def submit(self, request: SubmitRequest) -> ProviderRef:
        existing = self.find_existing(request)
        if existing is not None:  # submitted before a crash: never start the same job twice
            return existing
        jobdir = JobDir(self.root / request.job_id)
        jobdir.create(request.model_dump(mode="json"))
        env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        from anytune_local.launch import worker_command

        command = worker_command(request.spec, jobdir.path)  # direct, or under `accelerate launch`
        proc = jobdir.start_worker(command, env)
        self._procs[request.job_id] = proc
        return ProviderRef(
            provider=self.name, id=request.job_id, data={"dir": str(jobdir.path), "pid": proc.pid}
        )

    def _running(self, ref: ProviderRef, jobdir: JobDir) -> bool:
        return jobdir.worker_alive(self._procs.get(ref.id))

    def poll(self, ref: ProviderRef, cursor: str | None = None) -> Snapshot:
        jobdir = self._jobdir(ref)
        if not jobdir.path.exists():
            raise NotFoundError(f"local job folder {jobdir.path} is gone")
        status = jobdir.fail_if_gone(self._running(ref, jobdir))
        events, metrics, offset = jobdir.events_since(cursor)
        step, total = status.get("step"), status.get("total_steps")
        state = status["state"]
        neutral = STATES.get(state, JobStatus.RUNNING)
        progress = min(1.0, step / total) if step is not None and total else None
        trained, cost = None, None
        if neutral is JobStatus.SUCCEEDED:
            progress = 1.0
            trained, cost = self._usage(jobdir)
        return Snapshot(
            status=neutral,
            provider_status=state,
            progress=progress,
            metrics=metrics,
            events=events,
            cursor=offset,
            error=status.get("error"),
            step=step,
            total_steps=total,
            trained_tokens=trained,
            cost=cost,
            poll_after=0.5,  # reading two small local files costs nothing
        )

    def _usage(self, jobdir: JobDir) -> tuple[int | None, float | None]:
        """Tokens trained, and what the machine's time cost at the catalog's hourly price for it (the
        worker's whole run: loading the model is billed time too)."""
        from anytune.plugin import load_catalog

        result = jobdir.read_result()
        if result is None:
            return None, None
        seconds, hardware = result.wall_seconds, result.hardware
        entry = load_catalog().price(self.name, hardware=hardware) if hardware else None
        cost = seconds / 3600 * entry.price if seconds is not None and entry is not None else None
        return result.trained_tokens, cost

    def cancel(self, ref: ProviderRef) -> None:
        jobdir = self._jobdir(ref)
        if not STATES.get(jobdir.read_status()["state"], JobStatus.RUNNING).active:
            return
        jobdir.cancel_file.touch()
        if not self._running(ref, jobdir):
            jobdir.write_status("cancelled")
            return
        jobdir.stop_worker(lambda: self._running(ref, jobdir))
        if STATES.get(jobdir.read_status()["state"], JobStatus.RUNNING).active:
            jobdir.write_status("cancelled")

    def result(self, ref: ProviderRef) -> ModelArtifact:
        jobdir = self._jobdir(ref)
        result = jobdir.read_result()
        if result is None:
            raise BackendError(f"local job {ref.id} has no result (status: {jobdir.read_status()['state']})")
        adapter = Path(result.adapter_path)
        return ModelArtifact(
            provider=self.name,
            model_id=str(adapter),
            kind=result.kind,
            base_model=result.base_model,
            adapter_type=result.adapter_type,
            path=str(adapter),
            merged_path=result.merged_path,
            files=sorted(p.name for p in adapter.iterdir()) if adapter.exists() else [],
            metrics=result.metrics,
            metadata=result.model_dump(
                include={
                    "base_model_path",
                    "base_model_source",
                    "trainable_parameters",
                    "steps",
                    "method",
                    "peak_rss_mb",
                    "wall_seconds",
                }
            ),
        )

    def export(self, model: ModelArtifact, out_dir: Path, *, dtype: str = "float32") -> ModelArtifact:
        """The adapter merged into its base model: full weights (safetensors) with the tokenizer, in a folder
        any transformers / vLLM / TGI setup loads without peft."""
        from anytune_local.export import merge_adapter

        folder = merge_adapter(model, out_dir, dtype=dtype)
        return model.model_copy(
            update={
                "kind": "merged",
                "model_id": str(folder),
                "path": str(folder),
                "merged_path": str(folder),
            }
        )

    def _load(self, model: ModelArtifact) -> tuple[Any, Any]:
        """The (model, tokenizer) for an artifact, keeping the last one loaded for the next call."""
        from anytune_local.loading import load_causal_lm, load_tokenizer, quiet_libraries
        from anytune_local.models import resolve_model

        quiet_libraries()
        if model.kind in ("merged", "full"):
            key: tuple[str, str | None] = (model.merged_path or model.path or model.model_id, None)
        else:
            base = model.metadata.get("base_model_path")
            if not base or not Path(base).exists():
                base = str(resolve_model(model.base_model).path)
            key = (base, model.path if model.kind == "adapter" else None)
        if self._loaded is not None and self._loaded[0] == key:
            return self._loaded[1], self._loaded[2]
        self._loaded = None
        tokenizer = load_tokenizer(key[1] or key[0])
        lm = load_causal_lm(key[0], adapter=key[1])
        self._loaded = (key, lm, tokenizer)
        return lm, tokenizer

    def generate(self, model: ModelArtifact, prompts: list[Messages], params: GenerationParams) -> list[str]:
        from anytune_local.generation import generate

        if model.metadata.get("method") == "reward":
            raise CapabilityError(
                f"{model.model_id} is a reward model: it scores answers, it does not write them"
            )

        lm, tokenizer = self._load(model)
        return generate(lm, tokenizer, prompts, params)

    def target_loss(
        self, model: ModelArtifact, prompts: list[Messages], targets: list[str]
    ) -> list[tuple[float, int]]:
        from anytune_local.generation import target_loss

        lm, tokenizer = self._load(model)
        return target_loss(lm, tokenizer, prompts, targets)
