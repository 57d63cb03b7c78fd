"""A small, real backend for testing the core's orchestration (not the local trainer): its jobs move
through a scripted list of states, it answers generate() by a rule, and it remembers what it was asked."""

from __future__ import annotations

from typing import Any, ClassVar

from anytune.data.formats import DataFormat
from anytune.hookspecs import (
    Backend,
    Capabilities,
    GenerationParams,
    PreparedData,
    ProviderRef,
    Quote,
    Snapshot,
    SubmitRequest,
    hookimpl,
)
from anytune.jobs import Event, EventKind, JobStatus, ModelArtifact
from anytune.spec import AdapterType, JobSpec, Method


class ScriptedBackend(Backend):
    name: ClassVar[str] = "scripted"

    def __init__(self, script: list[tuple[JobStatus, str]] | None = None, price: float = 1.0) -> None:
        self.script = script or [
            (JobStatus.QUEUED, "queued"),
            (JobStatus.RUNNING, "running"),
            (JobStatus.SUCCEEDED, "completed"),
        ]
        self.price = price
        self.calls: list[str] = []
        self.on_submit: Any = None
        self.fail_submit: Exception | None = None
        self.polls = 0
        self.created: dict[str, ProviderRef] = {}

    def capabilities(self) -> Capabilities:
        return Capabilities(
            methods=frozenset({Method.SFT, Method.DPO}),
            adapters=frozenset({AdapterType.LORA, AdapterType.FULL}),
            data_formats=frozenset({DataFormat.CHAT, DataFormat.PREFERENCE}),
            hyperparameters=frozenset({"epochs", "learning_rate"}),
        )

    def quote(self, spec: JobSpec, prepared: PreparedData) -> Quote:
        self.calls.append("quote")
        return Quote(provider=self.name, price=self.price, billable_tokens=prepared.tokens["train"].tokens)

    def submit(self, request: SubmitRequest) -> ProviderRef:
        self.calls.append("submit")
        if self.on_submit:
            self.on_submit(request)
        ref = ProviderRef(provider=self.name, id=f"remote-{request.job_id}")
        if self.fail_submit:
            if getattr(self.fail_submit, "after_create", False):
                self.created[request.job_id] = ref  # the provider made the job, then the answer was lost
            raise self.fail_submit
        self.created[request.job_id] = ref
        return ref

    def find_existing(self, request: SubmitRequest) -> ProviderRef | None:
        self.calls.append("find_existing")
        return self.created.get(request.job_id)

    def poll(self, ref: ProviderRef, cursor: str | None = None) -> Snapshot:
        status, raw = self.script[min(self.polls, len(self.script) - 1)]
        self.polls += 1
        start = int(cursor or 0)
        events = [Event(kind=EventKind.METRIC, data={"step": start + 1, "loss": 2.0 / (start + 1)})]
        return Snapshot(
            status=status,
            provider_status=raw,
            progress=min(1.0, self.polls / len(self.script)),
            metrics={"loss": 2.0 / (start + 1)},
            events=events,
            cursor=str(start + 1),
            error="boom" if status is JobStatus.FAILED else None,
        )

    def cancel(self, ref: ProviderRef) -> None:
        self.calls.append("cancel")
        self.script = [(JobStatus.CANCELLED, "cancelled")]
        self.polls = 0

    def result(self, ref: ProviderRef) -> ModelArtifact:
        self.calls.append("result")
        return ModelArtifact(
            provider=self.name, model_id=f"ft:{ref.id}", kind="provider_model", base_model="base"
        )

    def generate(self, model: ModelArtifact, prompts: list[Any], params: GenerationParams) -> list[str]:
        """The base model echoes the prompt; the fine-tuned one answers by reversing the letters."""
        outs = []
        for p in prompts:
            text = p[-1]["content"]
            if model.kind == "base":
                outs.append(text)
            else:
                letters = text.split(": ", 1)[1].split()
                outs.append("Reversed: " + " ".join(reversed(letters)))
        return outs


class ScriptedPlugin:
    def __init__(self, backend: ScriptedBackend) -> None:
        self.backend = backend

    @hookimpl
    def register_backends(self, register: Any) -> None:
        register(self.backend)
