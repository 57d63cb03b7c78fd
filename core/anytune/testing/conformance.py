"""The promises every anytune backend keeps, checked against its emulator: the conformance suite a plugin
author points at their backend (anytune's own backends pass it in anytune's test run).

    # tests/test_conformance.py of a plugin
    from anytune.testing.conformance import BackendConformance

    class TestAcme(BackendConformance):
        provider = "acme"                  # the backend's name
        emulator = "acme"                  # the emulator the plugin registers (`register_emulators`)
        base_model = "acme-small-1"

Each promise is one test; a broken one fails with the promise's name, what happened and how to fix it, and
no traceback from anytune. The same checks run without pytest: `Conformance(...).check("status-map")`
inside `with suite.running():`, raising `PromiseBroken` (its `promise` says which).

What the suite asks of the emulator besides the provider's routes (see `anytune.testing.EmulatorBase`):
`statuses` (every provider status and its neutral meaning), `create_route`, `job_ids()` and `hold()`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from anytune.errors import AnytuneError, BackendError, CapabilityError, DataError, SpecError
from anytune.hookspecs import ProviderRef
from anytune.jobs import Event, Job, JobStatus
from anytune.spec import AdapterType, Method
from anytune.testing.harness import (
    PROMISES,
    ROWS,
    RUNNABLE,
    ConformanceHarness,
    NotApplicable,
    PromiseBroken,
    chat_rows,
    said,
)
from anytune.testing.running import environment

__all__ = ["PROMISES", "BackendConformance", "Conformance", "NotApplicable", "PromiseBroken"]


@dataclass
class Conformance(ConformanceHarness):
    """The checks, on one backend and its emulator (`check(promise)` runs one). Use inside `running()`."""

    def check_capabilities_declared(self) -> None:
        self._need_emulator("capabilities-declared")
        caps = self.backend().capabilities()
        formats = {Method.SFT: "chat", Method.DPO: "preference", Method.CPT: "text"}
        failures = []
        for method in [m for m in RUNNABLE if m in caps.methods]:
            if not any(f.value == formats[method] for f in caps.data_formats):
                continue
            for adapter in sorted(caps.adapters):
                client = self.client()
                try:
                    job = self.follow(client, client.submit(self.spec(method=method, adapter=adapter)))
                except AnytuneError as exc:
                    failures.append(f"{method.value} + {adapter.value}: {said(exc)}")
                    continue
                if job.status is not JobStatus.SUCCEEDED:
                    failures.append(
                        f"{method.value} + {adapter.value}: ended {job.status.value} "
                        f"({job.provider_status}): {job.error or 'no error given'}"
                    )
        if failures:
            raise PromiseBroken(
                "capabilities-declared",
                "declared in capabilities() but did not run to succeeded on the emulator:\n  "
                + "\n  ".join(failures),
                "declare only the methods and adapters the provider runs; send what each needs in submit()",
            )

    def check_capabilities_undeclared(self) -> None:
        caps = self.backend().capabilities()
        method, failures = self.default_method(), []
        cases: list[tuple[str, dict[str, Any]]] = [
            (f"method {m.value}", {"method": m, "adapter": None}) for m in Method if m not in caps.methods
        ]
        cases += [
            (f"adapter {a.value}", {"method": method, "adapter": a})
            for a in AdapterType
            if a not in caps.adapters
        ]
        offered = {
            "method": getattr(self.emu, "methods", None),
            "adapter": getattr(self.emu, "adapters", None),
        }
        for kind, declared in (("method", caps.methods), ("adapter", caps.adapters)):
            beyond = sorted(
                d.value for d in declared if offered[kind] is not None and d.value not in offered[kind]
            )
            if beyond:
                failures.append(
                    f"capabilities() declares {kind}(s) {', '.join(beyond)}, which the provider does not offer "
                    f"(its emulator says: {', '.join(sorted(offered[kind] or ()))}): they would be accepted"
                )
        for label, args in cases:
            try:
                spec = self.spec(**args)
            except SpecError:
                continue  # a method that needs more than the suite writes (reward functions...)
            client, mark = self.client(), len(self.requests())
            try:
                client.submit(spec)
            except CapabilityError:
                pass
            except AnytuneError as exc:
                failures.append(f"{label}: refused as {type(exc).__name__}, not as a capability: {said(exc)}")
            else:
                failures.append(f"{label}: accepted and submitted")
            sent = [f"{e.method} {e.path}" for e in self.requests()[mark:] if e.method != "GET"]
            if sent:  # check_spec() may read the provider's limits; nothing may be written
                failures.append(f"{label}: sent {', '.join(sent[:3])} before refusing")
            if client.list_jobs():
                failures.append(f"{label}: a job row was recorded")
        if failures:
            raise PromiseBroken(
                "capabilities-undeclared",
                "\n  ".join(["what capabilities() does not declare was not refused cleanly:", *failures]),
                "declare in capabilities() only what the provider runs; capabilities() and check_spec() "
                "may read from the provider (a limits lookup) but never upload or create",
            )

    def check_prepare_refuses(self) -> None:
        method = self.default_method()
        good = ROWS.get(method, chat_rows)(30)
        cases = [("a line that is not JSON", "{not json")]
        cases += [(f"bad_rows[{i}]", row) for i, row in enumerate(self.bad_rows)]
        failures = []
        for i, (label, bad) in enumerate(cases):
            path = self.data(method, name=f"bad-{i}", rows=[*good[:2], bad, *good[2:]])
            client, mark = self.client(), len(self.requests())
            try:
                client.submit(self.spec(method=method, train=path))
            except DataError as exc:
                said = "\n".join([exc.message, *exc.details])
                if f"{path}:3" not in said:
                    failures.append(f"{label}: refused without naming {path}:3: {said(exc)}")
            except AnytuneError as exc:
                failures.append(f"{label}: refused as {type(exc).__name__}, not as bad data: {said(exc)}")
            else:
                failures.append(f"{label} at line 3: accepted and submitted")
            writes = [f"{e.method} {e.path}" for e in self.requests()[mark:] if e.method != "GET"]
            if writes:
                failures.append(f"{label}: sent {', '.join(writes[:3])} before refusing")
            if client.list_jobs():
                failures.append(f"{label}: a job row was recorded")
        if failures:
            raise PromiseBroken(
                "prepare-refuses",
                "\n  ".join(["a file the provider would refuse was not refused cleanly:", *failures]),
                "in prepare(), return a Problem('error', field, message, file=..., line=...) for every record "
                "the provider would refuse; never upload in prepare(), quote() or check_spec()",
            )

    def check_quote_complete(self) -> None:
        quote = self.client().preflight(self.spec(method=self.default_method()), quote_only=True).quote
        if not quote.available:
            if not quote.reason:
                raise PromiseBroken(
                    "quote-complete",
                    "the quote is unavailable and gives no reason",
                    "return anytune.plugin.unavailable(provider, reason)",
                )
            return
        missing = [
            f for f in ("price", "unit_price", "price_source", "price_date") if getattr(quote, f) is None
        ]
        if quote.billable_tokens is None and quote.hours is None:
            missing.append("billable_tokens or hours")
        if missing:
            raise PromiseBroken(
                "quote-complete",
                f"the quote lacks {', '.join(missing)}: {quote.model_dump(exclude_defaults=True)}",
                "build the quote with anytune.plugin.token_priced(...) or hour_priced(...), with prices in "
                "your plugin's prices.yaml (register_prices), each with its source and date",
            )

    def _submitted(self, promise: str, client: Any, **spec: Any) -> tuple[Job, ProviderRef]:
        job = client.submit(self.spec(method=self.default_method(), **spec))
        if job.provider_ref is None:
            raise PromiseBroken(promise, f"submit() gave no ProviderRef: {job.error}", "return a ProviderRef")
        return job, ProviderRef.model_validate(job.provider_ref)

    def check_status_map(self) -> None:
        self._need_emulator("status-map")
        statuses = dict(self.emu.statuses)
        if not statuses:
            raise PromiseBroken(
                "status-map",
                f"the emulator {type(self.emu).__name__} declares no statuses",
                "set `statuses = {'provider status': JobStatus...}` on it, from the provider's documentation",
            )
        client = self.client()
        _, ref = self._submitted("status-map", client)
        backend, failures = self.backend(), []
        for raw, neutral in statuses.items():
            self.emu.hold(ref.id, raw)
            try:
                snap = backend.poll(ref, None)
            except Exception as exc:
                failures.append(f"{raw!r}: poll() raised {type(exc).__name__}: {exc}")
                continue
            if snap.status is not neutral:
                failures.append(f"{raw!r} became {snap.status.value}; it means {neutral.value}")
            elif snap.provider_status != raw:
                failures.append(f"{raw!r}: provider_status says {snap.provider_status!r}, not the raw status")
        if failures:
            raise PromiseBroken(
                "status-map",
                "\n  ".join(["statuses the provider shows were not mapped to what they mean:", *failures]),
                "map every provider status in your backend's status table (and keep the raw one in "
                "Snapshot.provider_status); do not fall back to a default for statuses you know",
            )

    def check_row_before_submit(self) -> None:
        client = self.client()
        backend = client.backend(self.provider)
        seen: dict[str, Any] = {}
        original = backend.submit

        def spy(request: Any) -> Any:
            seen["row"] = any(j.id == request.job_id for j in client.list_jobs())
            seen["provider_jobs"] = list(self.emu.job_ids()) if self.emu is not None else []
            return original(request)

        backend.submit = spy  # type: ignore[method-assign]
        try:
            pre = client.preflight(self.spec(method=self.default_method()))
            early = list(self.emu.job_ids()) if self.emu is not None else []
            client.submit_prepared(pre)
        finally:
            del backend.submit
        failures = []
        if early or seen.get("provider_jobs"):
            failures.append(f"provider job(s) {early or seen['provider_jobs']} existed before submit()")
        if not seen.get("row"):
            failures.append("submit() ran before the job row was in the registry")
        if failures:
            raise PromiseBroken(
                "row-before-submit",
                "; ".join(failures),
                "create provider jobs only in submit(); capabilities(), check_spec(), prepare() and quote() "
                "must not create anything",
            )

    def check_create_once(self) -> None:
        self._need_emulator("create-once")
        method, path = self.emu.create_route
        self.emu.faults.add(method=method, path=path, drop=True)
        client = self.client()
        try:
            job = client.submit(self.spec(method=self.default_method()))
        except AnytuneError as exc:
            raise PromiseBroken(
                "create-once",
                f"a create whose answer was lost failed the job: {said(exc)}",
                "create with anytune.plugin.create_once(create, find, classify): a dropped connection is "
                "retryable, and find() looks for the job tagged with request.job_id",
            ) from None
        ids = self.emu.job_ids()
        if len(ids) != 1 or job.provider_job_id != ids[0]:
            raise PromiseBroken(
                "create-once",
                f"the provider holds {len(ids)} job(s) {ids} for one anytune job (recorded: {job.provider_job_id})",
                "tag the provider's job with request.job_id, implement find_existing(), and create through "
                "anytune.plugin.create_once(create, find, classify) with the SDK's own retries off",
            )

    def check_retries(self) -> None:
        self._need_emulator("retries")
        method, path = self.emu.create_route
        self.emu.faults.add(method=method, path=path, status=429, retry_after_ms=300, times=1)
        self.emu.faults.add(method=method, path=path, status=503, times=1)
        failures = []
        client = self.client()
        try:
            job = client.submit(self.spec(method=self.default_method()))
        except AnytuneError as exc:
            failures.append(f"a 429 then a 503 on the create failed the job: {said(exc)}")
        else:
            creates = self.creates()
            statuses = [e.status for e in creates]
            accepted = len(statuses) > 2 and 200 <= statuses[2] < 300  # 200, or 201 (Azure's create)
            if statuses[:2] != [429, 503] or not accepted or len(self.emu.job_ids()) != 1:
                failures.append(
                    f"create answers {statuses}, provider jobs {self.emu.job_ids()} (job {job.id})"
                )
            elif creates[1].at - creates[0].at < 0.25:
                failures.append(
                    f"retried {creates[1].at - creates[0].at:.2f}s after a 429 that asked for 0.3s (Retry-After)"
                )
            elif creates[2].at - creates[1].at < 0.05:
                failures.append("retried a 503 at once, without backoff")
        for status in (401, 403):
            mark, jobs = len(self.requests()), len(self.emu.job_ids())
            self.emu.faults.add(method=method, path=path, status=status, times=1)
            client = self.client()
            try:
                client.submit(self.spec(method=self.default_method()))
            except BackendError:
                pass
            except AnytuneError as exc:
                failures.append(f"a {status} became {type(exc).__name__}: {said(exc)}")
            attempts = len(self.creates(mark))
            if attempts != 1 or len(self.emu.job_ids()) != jobs:
                failures.append(
                    f"a {status} on the create was retried ({attempts} attempts, "
                    f"{len(self.emu.job_ids()) - jobs} job(s) made)"
                )
        if failures:
            raise PromiseBroken(
                "retries",
                "\n  ".join(["failed requests were not retried by the rules:", *failures]),
                "classify errors with anytune.plugin.http_failure(provider, status, message, headers): "
                "408/409/429/5xx and dropped connections are retryable (after Retry-After), 401/403 never",
            )

    def check_secrets(self) -> None:
        self._need_emulator("secrets")
        records: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(self.format(record))

        handler, root = Keep(logging.DEBUG), logging.getLogger()
        level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            client = self.client()
            caps = self.backend().capabilities()
            extra: dict[str, Any] = {}
            method = self.default_method()
            if caps.supports_generate and method is Method.SFT:
                extra["evaluation"] = {"metrics": ["exact_match"], "limit": 3}
                extra["data"] = {"train": self.data(method), "test": self.data(method, name="test")}
            result = client.run(self.spec(method=method, **extra), interval=0)
            report_dir = self.workdir / "report"
            try:
                if result.evaluation is not None:
                    client.report([result.job.id], out_dir=report_dir)
            except ImportError:
                pass  # reports need the plots extra
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
        key = self.api_key.encode()
        places = [
            str(p)
            for folder in (Path(os.environ["ANYTUNE_HOME"]), self.workdir / "report")
            if folder.exists()
            for p in folder.rglob("*")
            if p.is_file() and key in p.read_bytes()
        ]
        if any(self.api_key in r for r in records):
            places.append("the log")
        if places:
            raise PromiseBroken(
                "secrets",
                f"the API key was found in: {', '.join(places)}",
                "never write the key anywhere; name its environment variable in Backend.secrets so anytune "
                "masks it in everything it prints and stores, and read it with secret_from_env()",
            )

    def check_cancel(self) -> None:
        if not self.backend().capabilities().supports_cancel:
            raise NotApplicable(f"{self.provider} declares supports_cancel=False")
        client = self.client()
        job, _ = self._submitted("cancel", client, hyperparameters={**self.hyperparameters, "epochs": 3})
        client.cancel(job.id)
        job = self.follow(client, job)
        if not job.status.terminal:
            raise PromiseBroken(
                "cancel",
                f"{self.max_seconds:.0f}s after cancel() the job is {job.status.value} ({job.provider_status})",
                "cancel() must ask the provider to stop, and poll() must report its cancelled status",
            )

    def check_poll_cursor(self) -> None:
        client, backend = self.client(), self.backend()
        _, ref = self._submitted("poll-cursor", client)

        def key(e: Event) -> str:
            return json.dumps([e.kind, e.level, e.message, e.data], sort_keys=True, default=str)

        streamed: Counter[str] = Counter()
        cursor, polls = None, 0
        deadline = time.monotonic() + self.max_seconds
        while True:
            snap = backend.poll(ref, cursor)
            streamed.update(key(e) for e in snap.events)
            cursor, polls = snap.cursor, polls + 1
            if snap.status.terminal or time.monotonic() > deadline:
                break
            if self.emu is None:
                time.sleep(0.2)
        whole = Counter(key(e) for e in backend.poll(ref, None).events)
        repeated = [k for k, n in streamed.items() if n > max(1, whole[k])]
        if repeated:
            raise PromiseBroken(
                "poll-cursor",
                f"{len(repeated)} event(s) came back again in {polls} polls, e.g. {repeated[0]}",
                "return only the events after `cursor`, and a new cursor that marks the last one returned",
            )


# ------------------------------------------------------------------------------------ pytest's face


class BackendConformance:
    """Subclass in a test module (its name starting with Test) to check a backend's promises, one test each.

    Class attributes: `provider`, `base_model` (or `base_model_fixture`: the name of a fixture giving it),
    `emulator` (None: the checks that need one are skipped), `options` (provider_options for it),
    `hyperparameters`, `models` (method -> base model, for a method `base_model` cannot be trained with),
    `bad_rows` (records your provider refuses though anytune's generic checks pass: each
    must be refused by prepare() with its line), `environment` (variables set for the checks), `skip`
    (promise -> why it does not apply)."""

    provider: ClassVar[str]
    base_model: ClassVar[str] = ""
    base_model_fixture: ClassVar[str | None] = None
    emulator: ClassVar[str | None] = None
    options: ClassVar[dict[str, Any]] = {}
    hyperparameters: ClassVar[dict[str, Any]] = {"epochs": 1}
    bad_rows: ClassVar[Sequence[Any]] = ()
    models: ClassVar[Mapping[str, str]] = {}
    environment: ClassVar[dict[str, str]] = {}
    skip: ClassVar[Mapping[str, str]] = {}

    @pytest.fixture
    def conformance(self, tmp_path: Path, request: Any) -> Iterator[Conformance]:
        base = str(request.getfixturevalue(self.base_model_fixture)) if self.base_model_fixture else ""
        suite = Conformance(
            provider=self.provider,
            base_model=base or self.base_model,
            workdir=tmp_path,
            emulator=self.emulator,
            options=dict(self.options),
            hyperparameters=dict(self.hyperparameters),
            bad_rows=list(self.bad_rows),
            models=dict(self.models),
        )
        with environment(self.environment), suite.running():
            yield suite

    def _promise(self, suite: Conformance, promise: str) -> None:
        if promise in self.skip:
            pytest.skip(self.skip[promise])
        outcome: Exception | None = None
        try:
            suite.check(promise)
        except (NotApplicable, PromiseBroken) as exc:
            outcome = exc
        if isinstance(outcome, NotApplicable):
            pytest.skip(str(outcome))
        if outcome is not None:
            pytest.fail(str(outcome), pytrace=False)

    def test_capabilities_declared(self, conformance: Conformance) -> None:
        self._promise(conformance, "capabilities-declared")

    def test_capabilities_undeclared(self, conformance: Conformance) -> None:
        self._promise(conformance, "capabilities-undeclared")

    def test_prepare_refuses(self, conformance: Conformance) -> None:
        self._promise(conformance, "prepare-refuses")

    def test_quote_complete(self, conformance: Conformance) -> None:
        self._promise(conformance, "quote-complete")

    def test_status_map(self, conformance: Conformance) -> None:
        self._promise(conformance, "status-map")

    def test_row_before_submit(self, conformance: Conformance) -> None:
        self._promise(conformance, "row-before-submit")

    def test_create_once(self, conformance: Conformance) -> None:
        self._promise(conformance, "create-once")

    def test_retries(self, conformance: Conformance) -> None:
        self._promise(conformance, "retries")

    def test_secrets(self, conformance: Conformance) -> None:
        self._promise(conformance, "secrets")

    def test_cancel(self, conformance: Conformance) -> None:
        self._promise(conformance, "cancel")

    def test_poll_cursor(self, conformance: Conformance) -> None:
        self._promise(conformance, "poll-cursor")
