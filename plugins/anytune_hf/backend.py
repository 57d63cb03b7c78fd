"""The Hugging Face backend: anytune's own trainer on rented Hugging Face hardware (Jobs), or AutoTrain.

Jobs mode (the default) runs the local backend's training worker in a container on the chosen flavor
(`anytune_hf.runner`): the request and data are staged to a private dataset repo, the token goes as a job
secret, progress comes back through the job's log stream, and the adapter is pushed to a model repo that
`result()` downloads, so evaluation, export and serving work as for a local job. AutoTrain mode
(`provider_options.hf.mode: autotrain`) sends the job to an AutoTrain server instead (`anytune_hf.autotrain`).

Configured as the hub client is: `HF_TOKEN` (or the saved login) and `HF_ENDPOINT`, read at each call. Jobs
carry the label `anytune-job=<job id>`, so a create repeated after a lost answer or a crash finds the job it
made instead of paying for a second one."""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

from anytune.plugin import (
    CREDENTIALS,
    Backend,
    BackendError,
    Capabilities,
    DataBundle,
    Event,
    EventKind,
    GenerationParams,
    JobSpec,
    JobStatus,
    Limits,
    Messages,
    ModelArtifact,
    PreparedData,
    Problem,
    ProviderRef,
    Quote,
    RetryPolicy,
    Snapshot,
    SubmitRequest,
    UsageError,
    anytune_home,
    create_once,
    hour_priced,
    retry_call,
    secret_from_env,
)
from anytune_hf import autotrain
from anytune_hf.catalog import PROVIDER, Flavor, choose, flavor_named, memory_note
from anytune_hf.errors import classify, errors
from anytune_hf.names import job_label, slug
from anytune_hf.runner import CHECKPOINTS, EVENT, RESULT, RESULT_FILE, STATUS

STAGES: dict[str, JobStatus] = {
    "SCHEDULING": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "COMPLETED": JobStatus.SUCCEEDED,
    "ERROR": JobStatus.FAILED,
    "CANCELED": JobStatus.CANCELLED,
    "DELETED": JobStatus.CANCELLED,
}
POLL_AFTER = {"SCHEDULING": 15.0, "RUNNING": 20.0}
LABEL = "anytune-job"
IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"
DEFAULT_TIMEOUT_S = 1800  # Hugging Face's own default
TIMEOUT_MARGIN = 1.5  # the quote's ETA, times this, plus ten minutes
# provider_options.hf keys for this backend; every other key goes to the trainer as a local option
OPTIONS = frozenset(
    {
        "mode",
        "flavor",
        "hardware",
        "max_gpus",
        "namespace",
        "output_repo",
        "data_repo",
        "timeout",
        "image",
        "install",
        "params_b",
        "base_model",
        "resume_from",
        # AutoTrain mode
        "autotrain_url",
        "project_name",
    }
)
MODES = ("jobs", "autotrain")


def parse_timeout(value: Any) -> int:
    """Seconds from `3600`, `"90m"`, `"3h"` or `"1d"` (the hub client's notation)."""
    text = str(value).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(float(text))
    except ValueError:
        raise UsageError(
            f"provider_options.hf.timeout: {value!r} is not a duration", hint="give seconds, or 90m, 3h, 1d"
        ) from None


def endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def endpoint_is_local() -> bool:
    host = urlparse(endpoint() or "https://huggingface.co").hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HFBackend(Backend):
    name: ClassVar[str] = PROVIDER
    secrets: ClassVar[tuple[str, ...]] = ("HF_TOKEN",)

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._whoami: dict[tuple[str | None, str | None], str] = {}
        self._local: Any = None

    # ------------------------------------------------------------------------------------------ the Hub

    def token(self) -> str | None:
        from huggingface_hub import get_token

        return os.environ.get("HF_TOKEN") or get_token()

    def api(self) -> Any:
        """A hub client for the current HF_ENDPOINT and token (read at each call, not at import)."""
        from huggingface_hub import HfApi

        if os.environ.get("HF_TOKEN"):
            secret_from_env("HF_TOKEN", what="Hugging Face token")  # masked in everything anytune prints
        return HfApi(endpoint=endpoint(), token=self.token())

    def namespace(self, spec: JobSpec | None) -> str:
        """provider_options.hf.namespace, else the token's user (asked once: whoami-v2 is rate-limited)."""
        if spec is not None and spec.options_for(self.name).get("namespace"):
            return str(spec.options_for(self.name)["namespace"])
        key = (endpoint(), self.token())
        if key not in self._whoami:
            api = self.api()
            self._whoami[key] = str(retry_call(lambda: api.whoami(), classify, self.policy)["name"])
        return self._whoami[key]

    def _mode(self, spec: JobSpec) -> str:
        return str(spec.options_for(self.name).get("mode") or "jobs")

    # ------------------------------------------------------------------------------------- contract

    def _local_backend(self) -> Any:
        """The local backend: its worker trains in the container, its generation serves evaluation."""
        if self._local is None:
            from anytune_local.backend import LocalBackend

            self._local = LocalBackend()
        return self._local

    def capabilities(self) -> Capabilities:
        local = self._local_backend().capabilities()
        return local.model_copy(
            update={
                "limits": Limits(min_examples=1),
                "supports_cancel": True,
                "supports_resume": True,
                "supports_export": True,
                "notes": [
                    "Jobs mode runs anytune's local trainer on a rented flavor: every method and adapter of the "
                    "local backend, QLoRA with bitsandbytes on CUDA included",
                    "the flavor is the cheapest whose memory fits (provider_options.hf.flavor to choose one)",
                    "the adapter is pushed to a private model repo; `anytune jobs resume` restarts from the "
                    "last checkpoint pushed there",
                    "provider_options.hf.mode: autotrain sends sft/dpo/reward jobs to an AutoTrain server "
                    "(AutoTrain has had no release since January 2025)",
                ],
            }
        )

    def check_spec(self, spec: JobSpec) -> list[Problem]:
        problems: list[Problem] = []

        def error(field: str, message: str) -> None:
            problems.append(Problem("error", field, message))

        options = spec.options_for(self.name)
        mode = self._mode(spec)
        if mode not in MODES:
            error("provider_options.hf.mode", f"{mode!r}: give one of {', '.join(MODES)}")
            return problems
        for key in ("flavor", "hardware"):
            if options.get(key) and flavor_named(str(options[key])) is None:
                error(f"provider_options.hf.{key}", f"no flavor {options[key]!r} in the catalog")
        if options.get("timeout") is not None:
            try:
                parse_timeout(options["timeout"])
            except UsageError as exc:
                error("provider_options.hf.timeout", exc.message)
        model = spec.model_for(self.name)
        if Path(model).expanduser().exists() and not endpoint_is_local():
            error(
                "base_model",
                f"{model} is a folder on this machine, which a Hugging Face job cannot see: "
                "push it to a model repo and name that (owner/name)",
            )
        if mode == "autotrain":
            problems += autotrain.check_spec(spec)
        else:
            local = {**spec.options_for("local"), "base_model": model}  # the model the container trains
            options = {**spec.provider_options, "local": local}
            as_local = spec.model_copy(update={"provider": "local", "provider_options": options})
            problems += self._local_backend().check_spec(as_local)
        try:
            import huggingface_hub  # noqa: F401
        except ImportError:
            error(CREDENTIALS, "the Hugging Face backend needs huggingface_hub: pip install 'anytune[hf]'")
            return problems
        if not self.token():
            error(CREDENTIALS, "no Hugging Face token: set HF_TOKEN (a write token) or run `hf auth login`")
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:  # refused before the job is recorded, not at its first call to the Hub
            error(
                CREDENTIALS,
                "the hub client is in offline mode (HF_HUB_OFFLINE is set): unset it to send jobs",
            )
        return problems

    def prepare(self, spec: JobSpec, data: DataBundle) -> PreparedData:
        if self._mode(spec) == "autotrain":
            return autotrain.prepare(spec, data)
        return super().prepare(spec, data)

    def quote(self, spec: JobSpec, prepared: PreparedData) -> Quote:
        """Hours on the flavor named, else on the one that costs least among those whose memory fits (the
        memory model's figures in the assumptions), at the catalog's hourly price, billed per minute."""
        from anytune_local.quoting import count_tokens, epochs_of_data

        options = spec.options_for(self.name)
        model = spec.model_for(self.name)
        count, params = count_tokens(model, prepared.data.train)
        params_b = float(options["params_b"]) if options.get("params_b") else params
        multiplier, basis = epochs_of_data(count.examples, spec)

        def price_on(flavor: Flavor) -> Quote:
            return hour_priced(
                self.name,
                spec,
                model=model,
                hardware=flavor.hardware,
                count=count,
                multiplier=multiplier,
                params_b=params_b,
                measured_as="local",  # the same trainer: a run measured on the same hardware applies
                assumptions=[f"tokens trained = {count.tokens:,} tokens of the training data x {basis}"],
            )

        named = options.get("flavor") or options.get("hardware")
        if named:
            flavor = flavor_named(str(named))
            if flavor is None:
                raise UsageError(f"provider_options.hf.flavor: no flavor {named!r} in the catalog")
            quote = price_on(flavor)
            if quote.available and params_b is not None:
                quote.assumptions.insert(0, memory_note(spec, params_b, flavor))
            return quote
        max_gpus = options.get("max_gpus")
        return choose(spec, model, params_b, price_on, int(max_gpus) if max_gpus is not None else None)

    # ----------------------------------------------------------------------------------------- submit

    def _flavor(self, spec: JobSpec, prepared: PreparedData) -> tuple[Flavor, Quote]:
        quote = self.quote(spec, prepared)
        if not quote.available or quote.hardware is None:
            raise UsageError(f"no Hugging Face flavor for this job: {quote.reason}")
        flavor = flavor_named(quote.hardware)
        assert flavor is not None
        return flavor, quote

    def _timeout(self, spec: JobSpec, quote: Quote) -> int:
        option = spec.options_for(self.name).get("timeout")
        if option is not None:
            return parse_timeout(option)
        if quote.eta_seconds is None:
            return DEFAULT_TIMEOUT_S
        return max(DEFAULT_TIMEOUT_S, int(quote.eta_seconds * TIMEOUT_MARGIN) + 600)

    def _find_job(self, api: Any, namespace: str, job_id: str) -> Any | None:
        listing = retry_call(
            lambda: list(api.list_jobs(namespace=namespace, labels={LABEL: job_label(job_id)})),
            classify,
            self.policy,
        )
        return listing[0] if listing else None

    def _ref(self, job: Any, namespace: str, extra: dict[str, Any]) -> ProviderRef:
        return ProviderRef(
            provider=self.name, id=job.id, data={"namespace": namespace, "mode": "jobs", **extra}
        )

    def find_existing(self, request: SubmitRequest) -> ProviderRef | None:
        if self._mode(request.spec) == "autotrain":
            return autotrain.find_existing(self, request)
        api, namespace = self.api(), self.namespace(request.spec)
        job = self._find_job(api, namespace, request.job_id)
        if job is None:
            return None
        env = job.environment or {}
        return self._ref(
            job, namespace, {"output_repo": env.get("ANYTUNE_HF_OUTPUT_REPO"), "flavor": job.flavor}
        )

    def output_repo(self, spec: JobSpec, namespace: str, job_id: str) -> str:
        named = spec.options_for(self.name).get("output_repo")
        return str(named) if named else f"{namespace}/{slug(spec.display_name())}-{job_label(job_id)[:8]}"

    def stage(self, api: Any, repo: str, files: dict[str, bytes | str]) -> None:
        """Put files in the private dataset repo (created if needed), in one commit; a content-addressed data
        file already there is not sent again."""
        from huggingface_hub import CommitOperationAdd

        retry_call(
            lambda: api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True),
            classify,
            self.policy,
        )
        operations = []
        for path, content in files.items():
            if isinstance(content, str) and path.startswith("data/"):
                exists = retry_call(
                    lambda p=path: api.file_exists(repo, p, repo_type="dataset"),
                    classify,
                    self.policy,
                )
                if exists:
                    continue
            operations.append(CommitOperationAdd(path_in_repo=path, path_or_fileobj=content))
        errors.call(
            api.create_commit, repo, operations=operations, repo_type="dataset", commit_message="anytune"
        )

    def container_request(
        self, request: SubmitRequest, flavor: Flavor, paths: dict[str, str]
    ) -> dict[str, Any]:
        """The request the worker in the container trains from: the spec as a local job (every option of
        provider_options.hf that is not this backend's own goes to the trainer), data paths in the repo."""
        spec = request.spec
        trainer = {k: v for k, v in spec.options_for(self.name).items() if k not in OPTIONS}
        local = {**spec.options_for("local"), **trainer, "base_model": spec.model_for(self.name)}
        resume = spec.options_for(self.name).get("resume_from")
        if resume:
            local["resume_from"] = resume
        if flavor.gpus > 1 and "distributed" not in local:  # several GPUs: shard the model (FSDP)
            local["distributed"] = {"strategy": "fsdp", "num_processes": flavor.gpus}
        options = {**spec.provider_options, "local": local}
        raw = request.model_dump(mode="json")
        raw["spec"] = spec.model_copy(update={"provider": "local", "provider_options": options}).model_dump(
            mode="json"
        )
        for split, path in paths.items():
            raw["prepared"]["data"][split]["path"] = path
        return raw

    def submit(self, request: SubmitRequest) -> ProviderRef:
        if self._mode(request.spec) == "autotrain":
            return autotrain.submit(self, request)
        spec = request.spec
        api, namespace = self.api(), self.namespace(spec)
        existing = self.find_existing(request)
        if existing is not None:
            return existing
        flavor, quote = self._flavor(spec, request.prepared)
        options = spec.options_for(self.name)
        data_repo = str(options.get("data_repo") or f"{namespace}/anytune-data")
        output_repo = self.output_repo(spec, namespace, request.job_id)
        files: dict[str, bytes | str] = {}
        paths: dict[str, str] = {}
        for split in ("train", "validation", "test"):
            ref = getattr(request.data, split)
            if ref is not None:
                paths[split] = f"data/{ref.fingerprint}{Path(ref.path).suffix or '.jsonl'}"
                files[paths[split]] = ref.path
        request_path = f"jobs/{request.job_id}/request.json"
        files[request_path] = json.dumps(self.container_request(request, flavor, paths), indent=1).encode()
        self.stage(api, data_repo, files)
        install = str(options.get("install") or f"anytune[local]=={_version()}")
        token = self.token()
        kwargs = dict(
            image=str(options.get("image") or IMAGE),
            command=["uv", "run", "--with", install, "--", "python", "-m", "anytune_hf.runner"],
            env={
                "ANYTUNE_HF_JOB": request.job_id,
                "ANYTUNE_HF_DATA_REPO": data_repo,
                "ANYTUNE_HF_REQUEST": request_path,
                "ANYTUNE_HF_OUTPUT_REPO": output_repo,
                "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "PYTHONUNBUFFERED": "1",
            },
            secrets={"HF_TOKEN": token} if token else None,
            flavor=flavor.name,
            timeout=self._timeout(spec, quote),
            labels={LABEL: job_label(request.job_id)},
            namespace=namespace,
        )
        job = create_once(
            lambda: api.run_job(**kwargs),
            lambda: self._find_job(api, namespace, request.job_id),
            classify,
            self.policy,
        )
        price = self._live_price(api, flavor)
        return self._ref(
            job,
            namespace,
            {
                "output_repo": output_repo,
                "flavor": flavor.name,
                "price_per_hour": price if price is not None else flavor.price,
                "price_source": "GET /api/jobs/hardware" if price is not None else "catalog",
            },
        )

    def _live_price(self, api: Any, flavor: Flavor) -> float | None:
        """The flavor's price per hour as Hugging Face lists it now (the catalog may be behind); None when the
        list cannot be read, which does not stop the job."""
        try:
            hardware = retry_call(lambda: api.list_jobs_hardware(), classify, self.policy)
        except BackendError:
            return None
        for item in hardware:
            if item.name == flavor.name and item.unit_cost_usd is not None:
                per_unit = float(item.unit_cost_usd)
                return round(per_unit * 60 if str(item.unit_label).lower() == "minute" else per_unit, 6)
        return None

    # ------------------------------------------------------------------------------------------ follow

    def _inspect(self, api: Any, ref: ProviderRef) -> Any:
        namespace = ref.data.get("namespace")
        return retry_call(lambda: api.inspect_job(job_id=ref.id, namespace=namespace), classify, self.policy)

    def _logs(self, api: Any, ref: ProviderRef) -> list[str]:
        namespace = ref.data.get("namespace")
        return retry_call(
            lambda: list(api.fetch_job_logs(job_id=ref.id, namespace=namespace)), classify, self.policy
        )

    def poll(self, ref: ProviderRef, cursor: str | None = None) -> Snapshot:
        if ref.data.get("mode") == "autotrain":
            return autotrain.poll(self, ref, cursor)
        api = self.api()
        job = self._inspect(api, ref)
        stage = str(job.status.stage)
        lines = [] if stage == "SCHEDULING" else self._logs(api, ref)
        seen = int(cursor or 0)
        events: list[Event] = []
        metrics: dict[str, float] = {}
        state: dict[str, Any] = {}
        result: dict[str, Any] | None = None
        for number, line in enumerate(lines):
            if (said := _marked(line, STATUS)) is not None:
                state = said
            elif (said := _marked(line, RESULT)) is not None:
                result = said
            if number < seen or (raw := _marked(line, EVENT)) is None:
                continue
            event = Event(
                time=datetime.fromtimestamp(raw["time"], UTC) if raw.get("time") else datetime.now(UTC),
                kind=EventKind(raw.get("kind", "log")),
                level=raw.get("level", "info"),
                message=raw.get("message", ""),
                data=raw.get("data", {}),
            )
            if event.kind is EventKind.METRIC:
                metrics.update({k: v for k, v in event.data.items() if isinstance(v, int | float)})
            events.append(event)
        status = STAGES.get(stage, JobStatus.RUNNING)
        error = None
        if status is JobStatus.SUCCEEDED and result is None and self._pushed(api, ref):
            result = {}  # the log replay missed the line, but the model and its result file are in the repo
        if status is JobStatus.SUCCEEDED and result is None:
            status = JobStatus.FAILED
            error = f"the job ended without pushing a model: {state.get('error') or _tail(lines)}"
        elif status is JobStatus.FAILED:
            said = job.status.message or state.get("error") or "Hugging Face reports ERROR"
            tail = _tail(lines)
            error = f"{said}: {tail}" if tail and tail not in said else said
        step, total = state.get("step"), state.get("total_steps")
        progress = min(1.0, step / total) if step is not None and total else None
        if status is JobStatus.SUCCEEDED:
            progress = 1.0
        return Snapshot(
            status=status,
            provider_status=stage,
            progress=progress,
            metrics=metrics,
            events=events,
            cursor=str(len(lines)),
            error=error,
            step=step,
            total_steps=total,
            trained_tokens=(result or {}).get("result", {}).get("trained_tokens"),
            cost=self._cost(job, ref),
            poll_after=POLL_AFTER.get(stage),
        )

    def _pushed(self, api: Any, ref: ProviderRef) -> bool:
        repo = ref.data.get("output_repo")
        return bool(repo) and bool(
            retry_call(lambda: api.file_exists(repo, RESULT_FILE), classify, self.policy)
        )

    def _cost(self, job: Any, ref: ProviderRef) -> float | None:
        """Minutes started or running, each billed whole, at the flavor's price when the job was sent (Hugging
        Face's list then, else the catalog's)."""
        flavor = flavor_named(str(ref.data.get("flavor") or job.flavor or ""))
        price = ref.data.get("price_per_hour") or (flavor.price if flavor is not None else None)
        if price is None or job.started_at is None:
            return None
        end = job.finished_at or datetime.now(UTC)
        minutes = max(1, math.ceil((end - job.started_at).total_seconds() / 60))
        return round(minutes * float(price) / 60, 6)

    def cancel(self, ref: ProviderRef) -> None:
        if ref.data.get("mode") == "autotrain":
            autotrain.cancel(self, ref)
            return
        api = self.api()
        retry_call(
            lambda: api.cancel_job(job_id=ref.id, namespace=ref.data.get("namespace")),
            classify,
            self.policy,
        )

    # ------------------------------------------------------------------------------------------ result

    def download(self, repo: str, revision: str | None) -> Path:
        """The repo's files at `revision`, in anytune's model cache (kept: a revision never changes)."""
        api = self.api()
        target = anytune_home() / "hf" / "models" / repo.replace("/", "--") / (revision or "main")
        if not (target / ".complete").exists():
            retry_call(
                lambda: api.snapshot_download(
                    repo,
                    revision=revision,
                    local_dir=target,
                    ignore_patterns=[f"{CHECKPOINTS}/*"],
                ),
                classify,
                self.policy,
            )
            (target / ".complete").touch()
        return target

    def result(self, ref: ProviderRef) -> ModelArtifact:
        if ref.data.get("mode") == "autotrain":
            return autotrain.result(self, ref)
        return self.model_from_repo(str(ref.data.get("output_repo") or ""), {"job": ref.id})

    def model_from_repo(
        self,
        repo: str,
        metadata: dict[str, Any],
        *,
        base_model: str | None = None,
        adapter_type: str | None = None,
    ) -> ModelArtifact:
        """The model in `repo` at its current revision, downloaded: what `anytune_result.json` says of it (the
        runner writes it), else what its files show (an adapter has adapter_config.json) and the defaults."""
        api = self.api()
        info = retry_call(lambda: api.repo_info(repo), classify, self.policy)
        folder = self.download(repo, info.sha)
        stored = json.loads((folder / RESULT_FILE).read_text()) if (folder / RESULT_FILE).exists() else {}
        adapter = (folder / "adapter_config.json").exists()
        kind = stored.get("kind") or ("adapter" if adapter else "merged")
        merged = folder / "merged" if stored.get("merged_path") else (None if adapter else folder)
        return ModelArtifact(
            provider=self.name,
            model_id=f"{repo}@{info.sha}",
            kind=kind,
            base_model=str(stored.get("base_model") or base_model),
            adapter_type=stored.get("adapter_type") or adapter_type or ("lora" if adapter else "full"),
            path=str(folder),
            merged_path=str(merged) if merged else None,
            files=sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")),
            metrics=stored.get("metrics", {}),
            metadata={
                "repo": repo,
                "revision": info.sha,
                "url": f"{(endpoint() or 'https://huggingface.co').rstrip('/')}/{repo}",
                **metadata,
                **{k: stored.get(k) for k in ("base_model_path", "method", "steps", "trainable_parameters")},
            },
        )

    def resume_point(self, ref: ProviderRef) -> str | None:
        """The newest checkpoint the job pushed to its model repo, as `hf://owner/name/checkpoints/checkpoint-N`."""
        api = self.api()
        repo = ref.data.get("output_repo") or ref.data.get("model_repo")
        if not repo:
            return None
        try:
            files = errors.call(api.list_repo_files, repo)
        except BackendError as exc:
            if exc.status == 404:
                return None
            raise
        steps = {
            int(m.group(1))
            for f in files
            if (m := re.match(rf"{CHECKPOINTS}/checkpoint-(\d+)/trainer_state\.json$", f))
        }
        return f"hf://{repo}/{CHECKPOINTS}/checkpoint-{max(steps)}" if steps else None

    def _local_copy(self, model: ModelArtifact) -> ModelArtifact:
        """The artifact with its files on this machine (downloaded again if the cache lost them)."""
        if model.kind == "base" or (model.path and Path(model.path).exists()):
            return model
        repo, revision = model.metadata.get("repo"), model.metadata.get("revision")
        if not repo:
            raise BackendError(f"{model.model_id} has no files here and names no repo to download them from")
        folder = self.download(str(repo), revision)
        merged = folder / "merged"
        return model.model_copy(
            update={"path": str(folder), "merged_path": str(merged) if merged.exists() else model.merged_path}
        )

    def generate(self, model: ModelArtifact, prompts: list[Messages], params: GenerationParams) -> list[str]:
        return self._local_backend().generate(self._local_copy(model), prompts, params)

    def target_loss(
        self, model: ModelArtifact, prompts: list[Messages], targets: list[str]
    ) -> list[tuple[float, int]]:
        return self._local_backend().target_loss(self._local_copy(model), prompts, targets)

    def export(self, model: ModelArtifact, out_dir: Path, *, dtype: str = "float32") -> ModelArtifact:
        return self._local_backend().export(self._local_copy(model), out_dir, dtype=dtype)


def _marked(line: str, marker: str) -> dict[str, Any] | None:
    """The JSON object behind `marker` in a log line, or None. Tolerant, because a job's log is a shared
    stream: a progress bar's carriage-return text can stand before the marker, other output can follow the
    object, and a line can be cut short; such a line is read as far as it holds or is left as plain log."""
    at = line.find(marker)
    if at < 0:
        return None
    try:
        value, _end = _DECODER.raw_decode(line, at + len(marker))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_DECODER = json.JSONDecoder()


def _tail(lines: list[str], n: int = 3) -> str:
    plain = [line for line in lines if not any(m in line for m in (EVENT, STATUS, RESULT)) and line.strip()]
    return " | ".join(plain[-n:])


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anytune")
    except PackageNotFoundError:  # pragma: no cover - a source checkout without metadata
        return "0.0.0"
