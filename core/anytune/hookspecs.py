"""The plugin contract, whole, in one file.

A plugin is a module (or object) with pluggy hook implementations, published under the entry-point group
``anytune``::

    # pyproject.toml of a plugin
    [project.entry-points.anytune]
    myprovider = "anytune_myprovider.plugin"

    # anytune_myprovider/plugin.py
    from anytune.plugin import hookimpl

    @hookimpl
    def register_backends(register):
        register(MyBackend())

A backend is a `Backend` subclass: a `name` and the methods below. The core walks one job in a straight
line:

    spec -> generic data checks -> capabilities() + check_spec() -> prepare() -> quote() -> budget
         -> job row recorded -> submit() -> poll() ... -> result() -> register -> generate() (evaluation)

Everything left of "job row recorded" may refuse (a `Problem` with file, line and field) and leaves nothing
behind: no row, no upload. `prepare()` is where a provider's data rules live: it converts the data to the
provider's format once, names every line the provider would refuse, counts billable tokens and writes
content-addressed files; `quote()` prices what it prepared and `submit()` only uploads and creates.
Everything right of it is resumable after a crash without a second paid job (`find_existing()`).
`cancel()` may come at any time. Built-in backends are loaded exactly like this, through their own entry
points.

Plugin authors import from `anytune.plugin`, which re-exports this module with the helpers a backend needs.

Backends must not block the caller for long: `submit()` starts work and returns a `ProviderRef`; `poll()`
reports progress. Keep imports of heavy libraries (torch, provider SDKs) inside the methods that need them,
so that `anytune --help` and `anytune plugins list` stay fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, ClassVar, Literal

import pluggy
from pydantic import BaseModel, ConfigDict, Field

from anytune.errors import (
    AnytuneError,
    BackendError,
    CapabilityError,
    DataError,
    NotFoundError,
    UsageError,
)
from anytune.jobs import Event, EventKind, JobStatus, ModelArtifact, RecurringCost
from anytune.spec import AdapterType, DataFormat, JobSpec, Method

hookspec = pluggy.HookspecMarker("anytune")
hookimpl = pluggy.HookimplMarker("anytune")

# The contract, whole: the hooks, what a backend implements, and every type it receives, returns or raises
# (those defined elsewhere in the core are named here too, so that this list is the contract).
__all__ = [
    "CREDENTIALS",
    "AdapterType",
    "AnytuneError",
    "AnytuneSpec",
    "Backend",
    "BackendError",
    "BillableTokens",
    "Capabilities",
    "CapabilityError",
    "DataBundle",
    "DataError",
    "DataFormat",
    "DatasetRef",
    "EmulatorInfo",
    "EmulatorOptions",
    "Event",
    "EventKind",
    "GenerationParams",
    "JobSpec",
    "JobStatus",
    "Limits",
    "Messages",
    "Method",
    "ModelArtifact",
    "NotFoundError",
    "PreparedData",
    "PreparedFile",
    "Problem",
    "ProviderRef",
    "Quote",
    "RecurringCost",
    "Snapshot",
    "SubmitRequest",
    "UsageError",
    "hookimpl",
    "hookspec",
]


# ------------------------------------------------------------------------------- what a backend can do


CREDENTIALS = "credentials"


@dataclass(frozen=True)
class Problem:
    """One way in which a spec or its data does not fit a backend. Errors refuse the job; warnings are shown.

    `file` and `line` point at the user's own data (line 1 is the file's first line) when the problem is in
    one record. An error on the field `CREDENTIALS` (a missing API key) refuses a submit but not a quote."""

    severity: Literal["error", "warning"]
    field: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = (
            f"{self.file}:{self.line}: " if self.file and self.line else f"{self.file}: " if self.file else ""
        )
        what = f"{self.field}: " if self.field and self.field != CREDENTIALS and not self.file else ""
        return f"{where}{what}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class Limits(BaseModel):
    """Provider limits the core checks before anything is prepared (the rest are `prepare()`'s)."""

    model_config = ConfigDict(extra="forbid")

    min_examples: int | None = Field(None, description="fewest training examples the provider takes")
    max_seq_length: int | None = Field(None, description="largest hyperparameters.max_seq_length it takes")


class Capabilities(BaseModel):
    """What a backend can run. The core compares a JobSpec against this and refuses, with reasons, what
    does not fit.

    `base_models` maps neutral ids to the provider's ids; None means the backend takes any model id or
    path it can load. `hyperparameters` lists the `Hyperparameters` fields the backend honours; a spec that
    sets any other gets a warning (an error with `strict: true`).
    """

    model_config = ConfigDict(extra="forbid")

    methods: frozenset[Method]
    adapters: frozenset[AdapterType]
    data_formats: frozenset[DataFormat]
    hyperparameters: frozenset[str]
    base_models: dict[str, str] | None = None
    limits: Limits = Field(default_factory=Limits)
    supports_cancel: bool = True
    supports_pause: bool = False
    supports_continue: bool = Field(False, description="can start a new job from a finished job's checkpoint")
    supports_generate: bool = True
    supports_resume: bool = Field(
        False, description="can restart a failed or cancelled job from its last checkpoint (as a new job)"
    )
    supports_export: bool = Field(False, description="can write merged full weights (`Backend.export`)")
    notes: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------------------------- data and quotes


class DatasetRef(BaseModel):
    """A validated data file: where it is, what format, how big, and its content fingerprint."""

    model_config = ConfigDict(extra="forbid")

    path: str
    format: DataFormat
    rows: int
    fingerprint: str
    tokens: int | None = None
    tokens_estimated: bool = True
    origin: str | None = Field(
        None, description="the user's file this split was cut from (validation_split); problems name it"
    )


class DataBundle(BaseModel):
    """The splits of a job after validation. The backend converts them to its own format if it must."""

    model_config = ConfigDict(extra="forbid")

    train: DatasetRef
    validation: DatasetRef | None = None
    test: DatasetRef | None = None


class BillableTokens(BaseModel):
    """Tokens a provider bills for one pass over one split, and how they were counted."""

    model_config = ConfigDict(extra="forbid")

    tokens: int
    examples: int
    counter: str = Field(description="the tokenizer (or estimate) that counted them")
    exact: bool = False
    notes: list[str] = Field(default_factory=list)


class PreparedFile(BaseModel):
    """One split written in the provider's own format, to a content-addressed file: the same content always
    gets the same `name`, which is how an upload is found again instead of being repeated."""

    model_config = ConfigDict(extra="forbid")

    path: str
    name: str
    sha256: str
    rows: int
    format: str = Field(description="the provider's name for the file's format (chat, conversation, ...)")
    size: int = 0


class PreparedData(BaseModel):
    """What `Backend.prepare()` made of a job's data: files in the provider's format, billable tokens per
    split, and every problem the provider would raise about the data. The core refuses the job on any error
    problem before the job row is written; `quote()` prices it and `submit()` uploads its files.

    `files` empty means the backend takes anytune's validated files as they are (`data`)."""

    model_config = ConfigDict(extra="forbid")

    provider: str
    data: DataBundle
    files: dict[str, PreparedFile] = Field(default_factory=dict)
    tokens: dict[str, BillableTokens] = Field(default_factory=dict)
    problems: list[Problem] = Field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    def missing_files(self) -> list[str]:
        """Prepared files no longer on disk (a cleared cache): prepare again before submitting."""
        return [f.path for f in self.files.values() if not Path(f.path).is_file()]


class Quote(BaseModel):
    """What a job would cost on one backend, and on what that figure rests.

    Token-priced providers fill `billable_tokens` x `unit_price` per 1M; hour-priced ones (`hardware` set)
    `hours` x `unit_price`. A provider that cannot run the job sets `available=False` and says why in
    `reason` instead of giving a number. Build quotes with `anytune.cost.quotes` helpers, which read the
    pricing catalog and fill the sources.
    """

    model_config = ConfigDict(extra="forbid")

    provider: str
    model: str | None = None
    hardware: str | None = Field(None, description="for hour-priced quotes: the machine priced")
    available: bool = True
    reason: str | None = None
    billable_tokens: int | None = None
    tokens_estimated: bool = True
    token_counter: str | None = Field(None, description="how the tokens were counted (tokenizer name)")
    price: float | None = None
    currency: str = "USD"
    unit_price: float | None = None
    unit: str | None = Field(None, description="'1m_tokens' or 'hour'")
    hours: float | None = None
    eta_seconds: float | None = None
    assumptions: list[str] = Field(default_factory=list)
    price_source: str | None = None
    price_date: date | None = None
    problems: list[str] = Field(
        default_factory=list, description="why the provider would refuse the job's data, file:line each"
    )
    recurring: list[RecurringCost] = Field(
        default_factory=list, description="costs after training (hosting per hour, storage per month), apart"
    )

    @property
    def label(self) -> str:
        return f"{self.provider} ({self.hardware})" if self.hardware else self.provider


# ---------------------------------------------------------------------------------------- job traffic


class SubmitRequest(BaseModel):
    """Everything `submit()` needs. `job_id` is anytune's id: a backend should tag the provider's job with
    it (metadata, suffix) so that after a crash it can find the job it already created instead of paying
    for a second one (see `Backend.find_existing`). `prepared` is what `prepare()` returned: upload its
    files, do not convert or check the data again."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    spec: JobSpec
    prepared: PreparedData

    @property
    def data(self) -> DataBundle:
        return self.prepared.data


class ProviderRef(BaseModel):
    """The backend's handle on a submitted job. `data` is the backend's own, stored as it is."""

    model_config = ConfigDict(extra="forbid")

    provider: str
    id: str
    data: dict[str, Any] = Field(default_factory=dict)
    provider_quote: float | None = Field(
        None, description="the provider's own price estimate, made at submit"
    )


class Snapshot(BaseModel):
    """A job's state as the backend sees it now, with the events since `cursor`."""

    model_config = ConfigDict(extra="forbid")

    status: JobStatus
    provider_status: str
    progress: float | None = Field(None, ge=0, le=1)
    metrics: dict[str, float] = Field(default_factory=dict)
    events: list[Event] = Field(default_factory=list)
    cursor: str | None = None
    error: str | None = None
    step: int | None = None
    total_steps: int | None = None
    trained_tokens: int | None = Field(None, description="tokens the provider says it trained on (billed)")
    cost: float | None = Field(None, description="actual cost so far, in the quote's currency, if known")
    provider_cost: float | None = Field(
        None, description="the provider's own billed figure, where it gives one"
    )
    poll_after: float | None = Field(
        None, ge=0, description="seconds the backend suggests before the next poll, suited to the job's state"
    )


class GenerationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    batch_size: int = Field(16, ge=1)


Messages = list[dict[str, Any]]


class Backend(ABC):
    """Base class of every backend. Subclasses set `name` and implement the abstract methods.

    `secrets` names the environment variables whose values are secrets to this backend (its API key, an
    integration's key): anytune masks them in everything it prints or stores, even when a job never
    reads them."""

    name: ClassVar[str]
    secrets: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def capabilities(self) -> Capabilities: ...

    def prepare(self, spec: JobSpec, data: DataBundle) -> PreparedData:
        """The job's data made ready for this provider, without network access: convert it to the provider's
        format once, apply every provider rule (a `Problem` with file, line and field for each record it
        would refuse), count billable tokens, write content-addressed files (`anytune.plugin.write_prepared`).

        The default takes anytune's validated files as they are, with their token counts."""
        tokens = {}
        for split in ("train", "validation"):
            ref = getattr(data, split)
            if ref is not None and ref.tokens is not None:
                tokens[split] = BillableTokens(
                    tokens=ref.tokens,
                    examples=ref.rows,
                    counter="estimate" if ref.tokens_estimated else "tokenizer",
                    exact=not ref.tokens_estimated,
                )
        return PreparedData(provider=self.name, data=data, tokens=tokens)

    @abstractmethod
    def quote(self, spec: JobSpec, prepared: PreparedData) -> Quote:
        """Price and duration of the job as prepared, computed without network access."""

    @abstractmethod
    def submit(self, request: SubmitRequest) -> ProviderRef:
        """Upload the prepared files, create the job and return at once. Called only after the job row is in
        the registry; never converts or checks the data again."""

    @abstractmethod
    def poll(self, ref: ProviderRef, cursor: str | None = None) -> Snapshot:
        """The job's state, and the events after `cursor` (the cursor of the previous snapshot)."""

    @abstractmethod
    def cancel(self, ref: ProviderRef) -> None: ...

    @abstractmethod
    def result(self, ref: ProviderRef) -> ModelArtifact:
        """The artifact of a succeeded job."""

    @abstractmethod
    def generate(self, model: ModelArtifact, prompts: list[Messages], params: GenerationParams) -> list[str]:
        """One completion per chat prompt, for evaluation. `model.kind == "base"` means the base model."""

    def base_artifact(self, model: ModelArtifact) -> ModelArtifact:
        """How to call the base model of the fine-tune `model` (the A side of an A/B). The default names the
        base model; a service that serves models only through deployments says which one."""
        return ModelArtifact.base(self.name, model.base_model)

    def serving_cost(self, model: ModelArtifact) -> float | None:
        """Optional: what serving `model` for evaluation has cost since the last call (a deployment created
        for it and billed by the hour), in the quote's currency. The core asks after each evaluation and adds
        the answer to the job's actual cost once; None when serving costs nothing beyond per-token inference.
        """
        return None

    def resume_point(self, ref: ProviderRef) -> str | None:
        """Optional (with `supports_resume`): the checkpoint a failed or cancelled job can restart from, as a
        value for `provider_options.<provider>.resume_from`; None if it saved none."""
        return None

    def target_loss(
        self, model: ModelArtifact, prompts: list[Messages], targets: list[str]
    ) -> list[tuple[float, int]]:
        """Optional, for the `eval_loss` and `perplexity` metrics: per example, the summed negative
        log-likelihood (nats) of `target` as the answer to `prompt`, and its number of tokens. Backends that
        cannot see token probabilities leave this out; those metrics then say so."""
        raise CapabilityError(f"{self.name} cannot compute the loss of an answer (no token probabilities)")

    def check_spec(self, spec: JobSpec) -> list[Problem]:
        """Problems with `spec` that `capabilities()` cannot express (a base model that does not exist or
        retires soon, an option the provider refuses). Must be quick and need no upload."""
        return []

    def pause(self, ref: ProviderRef) -> None:
        """Pause a running job (only if `capabilities().supports_pause`)."""
        raise CapabilityError(f"{self.name} cannot pause jobs")

    def resume(self, ref: ProviderRef) -> None:
        """Resume a paused job (only if `capabilities().supports_pause`)."""
        raise CapabilityError(f"{self.name} cannot resume paused jobs")

    def find_existing(self, request: SubmitRequest) -> ProviderRef | None:
        """The job this backend may already have created for `request.job_id` (after a crash or a dropped
        connection), or None. Remote backends should implement it; the core calls it before `submit`
        when it resumes a job that was recorded but never confirmed."""
        return None

    def export(self, model: ModelArtifact, out_dir: Path, *, dtype: str = "float32") -> ModelArtifact:
        """Optional (with `supports_export`): write `model` as full weights (an adapter merged into its
        base) that load without anytune into `out_dir`, and return the merged artifact."""
        raise CapabilityError(f"{self.name} cannot export models as merged weights")


# ----------------------------------------------------------------------------------------- emulators


@dataclass(frozen=True)
class EmulatorOptions:
    """How `anytune emulate` (or a test) asks a plugin for an emulator of its provider's API."""

    api_key: str | None = None
    clock: Any = None  # an anytune.testing.Clock; None = real time
    step_seconds: float = 0.5


@dataclass(frozen=True)
class EmulatorInfo:
    """An emulator a plugin offers: `build(options)` returns an object whose `app` is an ASGI application
    (an `anytune.testing.EmulatorBase`); `environment(url, key)` the variables that point the provider's SDK
    (and so anytune's backend) at it; `example` a job file to try it with."""

    name: str
    build: Callable[[EmulatorOptions], Any]
    environment: Callable[[str, str], dict[str, str]]
    description: str = ""
    example: str | None = None


# ------------------------------------------------------------------------------------------- the hooks


class AnytuneSpec:
    """The hooks a plugin may implement. All are optional."""

    @hookspec
    def register_backends(self, register: Callable[[Backend], None]) -> None:
        """Call `register(backend)` for each backend the plugin provides."""

    @hookspec
    def register_metrics(self, register: Callable[[str, Callable[[str, str], float]], None]) -> None:
        """Call `register(name, fn)`; `fn(prediction, reference) -> score in [0, 1]`."""

    @hookspec
    def register_emulators(self, register: Callable[[EmulatorInfo], None]) -> None:
        """Call `register(EmulatorInfo(...))` for each provider API the plugin emulates (`anytune emulate`)."""

    @hookspec
    def register_prices(self, register: Callable[[str, str], None]) -> None:
        """Call `register(origin, yaml_text)` with the plugin's pricing catalog (the format of
        docs/pricing.md): its prices, sources and availability windows. Merged after anytune's own catalog and
        before the user's override files, which still win."""

    @hookspec
    def register_commands(self, cli: Any) -> None:
        """Add CLI commands for a provider's own verbs: `cli` is anytune's typer app (`@cli.command()`)."""

    @hookspec
    def job_event(self, job_id: str, status: JobStatus, event: Event) -> None:
        """Told about each event the core records for a job (notifications, tracking)."""
