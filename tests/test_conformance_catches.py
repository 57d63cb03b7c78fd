"""The conformance suite catches real breakage: Together's backend, broken one way at a time, against its
emulator, and the promise each break violates named in the failure (the unbroken backend passes the same
checks in test_conformance.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import anytune_together.backend as together_backend
from anytune.plugin import AdapterType, Capabilities, Failure, SubmitRequest, anytune_home, hookimpl
from anytune.plugins import get_plugin_manager
from anytune.testing.conformance import Conformance, PromiseBroken
from anytune_together.backend import TogetherBackend
from anytune_together.errors import classify

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Conformance]:
    conformance = Conformance(
        provider="together",
        emulator="together",
        base_model=LLAMA,
        workdir=tmp_path,
        hyperparameters={"epochs": 1, "batch_size": 8},
    )
    with conformance.running():
        yield conformance


def broken(suite: Conformance, promise: str) -> PromiseBroken:
    with pytest.raises(PromiseBroken) as info:
        suite.check(promise)
    assert info.value.promise == promise
    assert str(info.value).startswith(f"[{promise}]") and "How to fix:" in str(info.value)
    return info.value


def install(backend: TogetherBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """`backend` in place of the built-in `together`, chosen the way a user chooses between two plugins."""

    class Plugin:
        @hookimpl
        def register_backends(self, register: Any) -> None:
            register(backend)

    monkeypatch.setenv("ANYTUNE_PREFER", "together=broken")
    get_plugin_manager().register(Plugin(), name="broken")


def test_a_status_left_unmapped(suite, monkeypatch):
    monkeypatch.delitem(together_backend.STATUS, "user_error")  # falls back to "running"
    failure = broken(suite, "status-map")
    assert "'user_error' became running; it means failed" in failure.what


def test_a_retried_401(suite, monkeypatch):
    def retry_everything(exc: BaseException) -> Failure:
        failure = classify(exc)
        return Failure(True, failure.error, 0.0)

    monkeypatch.setattr(together_backend, "classify", retry_everything)
    failure = broken(suite, "retries")
    assert "a 401 on the create was retried (2 attempts" in failure.what


def test_a_key_written_to_a_file(suite, monkeypatch):
    class Leaky(TogetherBackend):
        def submit(self, request: SubmitRequest) -> Any:
            (anytune_home() / "debug.json").write_text(json.dumps({"key": os.environ["TOGETHER_API_KEY"]}))
            return super().submit(request)

    install(Leaky(), monkeypatch)
    failure = broken(suite, "secrets")
    assert "debug.json" in failure.what


def test_a_duplicate_job_after_a_dropped_create(suite, monkeypatch):
    monkeypatch.setattr(TogetherBackend, "_find_job", lambda self, client, job_id: None)  # never looks
    failure = broken(suite, "create-once")
    assert "the provider holds 2 job(s)" in failure.what


def test_an_adapter_the_provider_does_not_offer_accepted(suite, monkeypatch):
    class Boastful(TogetherBackend):
        def capabilities(self) -> Capabilities:
            caps = super().capabilities()
            return caps.model_copy(update={"adapters": caps.adapters | {AdapterType.DORA}})

    install(Boastful(), monkeypatch)
    failure = broken(suite, "capabilities-undeclared")
    assert "declares adapter(s) dora, which the provider does not offer" in failure.what


def test_a_cursor_ignored(suite, monkeypatch):
    poll = TogetherBackend.poll
    monkeypatch.setattr(TogetherBackend, "poll", lambda self, ref, cursor=None: poll(self, ref, None))
    failure = broken(suite, "poll-cursor")
    assert "came back again" in failure.what


def test_a_method_not_written_is_named(suite, monkeypatch):
    def cancel(self: TogetherBackend, ref: Any) -> None:
        raise NotImplementedError("ask the provider to stop the job")

    monkeypatch.setattr(TogetherBackend, "cancel", cancel)
    failure = broken(suite, "cancel")
    assert failure.what == "TogetherBackend.cancel() is not written yet: ask the provider to stop the job"


def test_a_check_cut_short_by_the_providers_refusal_says_why(suite, monkeypatch):
    """A check that could not finish because the provider refused (an AnytuneError that is not "not written
    yet") is reported with the refusal's words; it raised UnboundLocalError instead (a shuffled run, seed
    4444, where Bedrock's emulator refused the credentials)."""
    from anytune.errors import BackendError

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise BackendError("Together refused the credentials (401)", hint="check TOGETHER_API_KEY")

    monkeypatch.setattr(TogetherBackend, "submit", refuse)
    failure = broken(suite, "cancel")
    assert "the check could not finish: Together refused the credentials (401)" in failure.what
