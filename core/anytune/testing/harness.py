"""The conformance suite's harness: the promises' names, the errors a check raises, the data it writes, and
`ConformanceHarness` (the emulator running, a fresh $ANYTUNE_HOME, specs and clients for the checks). The
checks themselves, and pytest's face, are `anytune.testing.conformance`."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anytune.errors import AnytuneError
from anytune.hookspecs import Backend
from anytune.jobs import Job
from anytune.spec import AdapterType, JobSpec, Method
from anytune.testing.faults import Fault
from anytune.testing.running import emulated, environment

PROMISES: dict[str, str] = {
    "capabilities-declared": "every method and adapter capabilities() declares runs to succeeded",
    "capabilities-undeclared": "what it does not declare is refused before anything is sent but reads",
    "prepare-refuses": "bad data is refused with its file and line, and nothing is sent",
    "quote-complete": "a quote has a price, its source and date (or says why there is none)",
    "status-map": "every status the provider shows maps to the neutral status it means",
    "row-before-submit": "the job row exists before submit(), and no provider job before it",
    "create-once": "a create whose answer is lost makes one provider job",
    "retries": "429 and 5xx are retried with backoff; 401 and 403 are not",
    "secrets": "the API key never reaches $ANYTUNE_HOME, logs or reports",
    "cancel": "cancel reaches a terminal state",
    "poll-cursor": "polling from a cursor never repeats an event",
}

DEFAULT_KEY = "conformance-key-0123456789abcdef"
RUNNABLE = (Method.SFT, Method.DPO, Method.CPT)  # the methods the suite writes data for


class PromiseBroken(AssertionError):
    """A backend broke one of anytune's promises: `promise` names it (a key of `PROMISES`)."""

    def __init__(self, promise: str, what: str, fix: str) -> None:
        self.promise, self.what, self.fix = promise, what, fix
        super().__init__(f"[{promise}] {PROMISES.get(promise, '')}: broken.\n{what}\nHow to fix: {fix}")


class NotApplicable(Exception):
    """The promise does not apply to this backend (no emulator, no cancel...); the reason says why."""


# ----------------------------------------------------------------------------------------- test data


def chat_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Reverse-the-letters chats: learnable, distinct, small."""
    words = [f"{chr(97 + (i * 7 + seed) % 26)}{chr(97 + (i * 3 + seed) % 26)}{i}" for i in range(n)]
    return [
        {
            "messages": [
                {"role": "user", "content": f"Reverse: {' '.join(w)}"},
                {"role": "assistant", "content": f"Reversed: {' '.join(reversed(w))}"},
            ]
        }
        for w in words
    ]


def preference_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    return [
        {
            "prompt": f"Say something kind about {i + 1000 * seed}",
            "chosen": f"{i} is wonderful.",
            "rejected": f"{i} is bad.",
        }
        for i in range(n)
    ]


def text_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    return [
        {"text": f"Document {i}.{seed}: the letters of word{i} reversed are {str(i)[::-1]}drow."}
        for i in range(n)
    ]


ROWS: dict[Method, Callable[..., list[Any]]] = {
    Method.SFT: chat_rows,
    Method.DPO: preference_rows,
    Method.CPT: text_rows,
}


def _write_jsonl(path: Path, rows: Sequence[Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return str(path)


def not_written(exc: BaseException) -> tuple[str, str] | None:
    """('Class.method()', its message) for a NotImplementedError in `exc`'s chain (a method a plugin has not
    filled in yet)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NotImplementedError):
            where = "a method"
            for frame, _ in traceback.walk_tb(current.__traceback__):
                owner = frame.f_locals.get("self")
                if owner is not None:
                    where = f"{type(owner).__name__}.{frame.f_code.co_name}()"
            return where, str(current)
        current = current.__cause__ or current.__context__
    return None


def said(exc: AnytuneError) -> str:
    """An error's message and its first details, for a broken promise's account."""
    return "; ".join([exc.message, *exc.details[:3]])


# ------------------------------------------------------------------------------------------- the suite


@dataclass
class ConformanceHarness:
    """The checks, on one backend and its emulator. Use inside `running()` (emulator up, environment set,
    a fresh $ANYTUNE_HOME under `workdir`)."""

    provider: str
    base_model: str
    workdir: Path
    emulator: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=lambda: {"epochs": 1})
    bad_rows: Sequence[Any] = ()  # records the provider refuses though anytune's own checks pass
    models: Mapping[str, str] = field(default_factory=dict)  # method -> base model, where base_model can't
    api_key: str = DEFAULT_KEY
    tick: float = 5.0  # seconds the emulator's clock moves at each request
    max_seconds: float = 120.0  # a job on the emulator that has not ended by then is a failure
    emu: Any = None
    _files: int = 0

    @contextmanager
    def running(self) -> Iterator[ConformanceHarness]:
        from anytune.plugins import get_plugin_manager

        home = self.workdir / "anytune-home"
        with environment({"ANYTUNE_HOME": str(home), "ANYTUNE_POLL_INTERVAL": "0"}):
            if self.emulator is None:
                yield self
                return
            if self.emulator not in get_plugin_manager().emulators():
                raise PromiseBroken(
                    "capabilities-declared",
                    f"no emulator named {self.emulator!r} is registered",
                    "register it in your plugin: @hookimpl def register_emulators(register): "
                    "register(EmulatorInfo(name=..., build=..., environment=...))",
                )
            with emulated(self.emulator, api_key=self.api_key, tick=self.tick) as emu:
                self.emu = emu
                try:
                    yield self
                finally:
                    self.emu = None

    # --------------------------------------------------------------------------------------- helpers

    def client(self) -> Any:
        from anytune.client import Client

        return Client()

    def backend(self) -> Backend:
        from anytune.plugins import get_plugin_manager

        return get_plugin_manager().get_backend(self.provider)

    def data(self, method: Method, name: str | None = None, rows: Sequence[Any] | None = None) -> str:
        """A data file for `method`; each call without `rows` gets its own content, so that every job of a
        check uploads its own file (a provider's handling of a repeated upload is not what is checked)."""
        self._files += 1
        if rows is None:
            rows = ROWS.get(method, chat_rows)(30, seed=self._files)
        return _write_jsonl(self.workdir / "data" / f"{name or method.value}-{self._files}.jsonl", rows)

    def spec(
        self,
        *,
        method: Method | str = Method.SFT,
        adapter: AdapterType | str | None = None,
        train: str | None = None,
        **extra: Any,
    ) -> JobSpec:
        from anytune.jobfile import spec_from_dict

        method = Method(method)
        caps = self.backend().capabilities()
        if adapter is None:
            adapter = AdapterType.LORA if AdapterType.LORA in caps.adapters else sorted(caps.adapters)[0]
        raw: dict[str, Any] = {
            "name": f"conformance-{method.value}-{AdapterType(adapter).value}",
            "base_model": self.models.get(method.value, self.base_model),
            "provider": self.provider,
            "method": method.value,
            "adapter": {"type": AdapterType(adapter).value},
            "hyperparameters": dict(self.hyperparameters),
            "data": {"train": train or self.data(method if method in ROWS else Method.SFT)},
        }
        if self.options:
            raw["provider_options"] = {self.provider: dict(self.options)}
        raw.update(extra)
        return spec_from_dict(raw, source="conformance spec")

    def default_method(self) -> Method:
        methods = self.backend().capabilities().methods
        return Method.SFT if Method.SFT in methods else sorted(methods)[0]

    def requests(self) -> list[Any]:
        return list(self.emu.recorder.exchanges) if self.emu is not None else []

    def creates(self, after: int = 0) -> list[Any]:
        method, path = self.emu.create_route
        route = Fault(method=method, path=path)  # the faults' own request matching
        return [e for e in self.requests()[after:] if route.matches(e.method, e.path)]

    def _need_emulator(self, promise: str) -> None:
        if self.emu is None:
            raise NotApplicable(f"{promise} is checked against an emulator; {self.provider} has none here")
        if promise in ("create-once", "retries") and not self.emu.create_route:
            raise PromiseBroken(
                promise,
                f"the emulator {type(self.emu).__name__} does not say which request creates a job",
                "set `create_route = ('POST', r'/v1/your/jobs/path')` on the emulator class",
            )

    def follow(self, client: Any, job: Job) -> Job:
        return client.follow(job.id, interval=0, timeout=self.max_seconds)  # type: ignore[no-any-return]

    # ----------------------------------------------------------------------------------------- checks

    def check(self, promise: str) -> None:
        """Run one check; raise `PromiseBroken` naming it, or `NotApplicable`."""
        if promise not in PROMISES:
            raise ValueError(f"unknown promise {promise!r}; known: {', '.join(PROMISES)}")
        fn = getattr(self, "check_" + promise.replace("-", "_"))
        try:
            fn()
        except (PromiseBroken, NotApplicable):
            raise
        except Exception as exc:
            missing = not_written(exc)
            if missing:
                where, why = missing
                raise PromiseBroken(
                    promise,
                    f"{where} is not written yet" + (f": {why}" if why else ""),
                    f"write {where}; its docstring says what it must do (the contract: anytune.hookspecs.Backend "
                    "for a backend, anytune.testing.EmulatorBase for an emulator)",
                ) from None
            what = said(exc) if isinstance(exc, AnytuneError) else f"{type(exc).__name__}: {exc}"
            raise PromiseBroken(
                promise, f"the check could not finish: {what}", "see the message; `anytune emulate` helps"
            ) from exc
