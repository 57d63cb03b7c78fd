"""What every remote backend needs and should not write again: retry timing (on tenacity), and creating a
paid object (an upload, a job) at most once even when the connection drops after the provider made it.

Official SDKs retry 408/409/429/5xx and dropped connections on their own, which is right for reads and
wrong for creates: none of them sends an idempotency key, so a retried create can make a second paid job.
`create_once` turns the SDK's retries off for the create and, before each new attempt, asks the provider
whether the object already exists (a backend tags it with anytune's job id or a content hash).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from anytune.errors import BackendError
from anytune.locks import named_lock

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 120.0  # a provider asking for a longer wait is not retried (OpenAI's SDK rule)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter for the `attempt`-th retry (0-based)."""
        return min(self.base_delay * 2**attempt, self.max_delay) * random.uniform(0.75, 1.0)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if given."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lower:
            return float(lower["retry-after-ms"]) / 1000
    except ValueError:
        pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


@dataclass(frozen=True)
class Failure:
    """How a backend classifies one failed call: retry it (after `delay` seconds, if the provider said) or
    give up with `error`, which carries the provider's own message."""

    retryable: bool
    error: BackendError
    delay: float | None = None


def _with_retries(
    call: Callable[[], T],
    classify: Callable[[BaseException], Failure],
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    *,
    between: Callable[[], T | None] | None = None,
    on_retry: Callable[[int, Failure, float], None] | None = None,
) -> T:
    """`call()`, tried again (tenacity) after each retryable failure, waiting the provider's Retry-After or
    else the policy's backoff, up to `policy.attempts`; a failure that is not retryable, the last one, or one
    whose provider asks for a longer wait than `policy.max_retry_after` raises its classified error.
    `between()`, asked before each new attempt, may end the loop with what an earlier attempt already made."""
    from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

    seen: dict[int, Failure] = {}  # the classified failure of each exception met, by identity

    def failure_of(exc: BaseException) -> Failure:
        if id(exc) not in seen:
            seen.clear()
            seen[id(exc)] = classify(exc)
        return seen[id(exc)]

    def worth_retrying(exc: BaseException) -> bool:
        failure = failure_of(exc)
        return failure.retryable and (failure.delay or 0) <= policy.max_retry_after

    def wait(state: RetryCallState) -> float:
        failure = failure_of(state.outcome.exception())  # type: ignore[union-attr,arg-type]
        return failure.delay if failure.delay is not None else policy.backoff(state.attempt_number - 1)

    def told(state: RetryCallState) -> None:
        if on_retry is not None:
            failure = failure_of(state.outcome.exception())  # type: ignore[union-attr,arg-type]
            on_retry(state.attempt_number, failure, state.next_action.sleep)  # type: ignore[union-attr]

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait,
        retry=retry_if_exception(worth_retrying),
        sleep=sleep,
        before_sleep=told,
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                if between is not None and attempt.retry_state.attempt_number > 1:
                    existing = between()
                    if existing is not None:
                        return existing
                return call()
    except Exception as exc:
        raise _final_error(failure_of(exc), policy) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _final_error(failure: Failure, policy: RetryPolicy) -> BackendError:
    """The error a retry loop ends with. A provider that asked for a longer wait than anytune's limit was
    not retried: its error says so (the backend's hint, "anytune retried with back-off", would not be true),
    and carries the wait for whoever may try again later (a worker, `anytune jobs resume`)."""
    error = failure.error
    if not failure.retryable or failure.delay is None or failure.delay <= policy.max_retry_after:
        return error
    return BackendError(
        f"{error.message} (it asked to wait {failure.delay:.0f} s before trying again, longer than anytune "
        f"waits in one call, {policy.max_retry_after:.0f} s: not retried)",
        hint=f"try again in {failure.delay:.0f} s",
        retryable=True,
        provider_message=error.provider_message,
        status=error.status,
        retry_after=failure.delay,
    )


def create_once(
    create: Callable[[], T],
    find: Callable[[], T | None],
    classify: Callable[[BaseException], Failure],
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, Failure, float], None] | None = None,
) -> T:
    """Create a remote object, retrying transient failures, without ever creating it twice.

    `create` must not retry by itself; `find` returns the object if an earlier attempt made it.
    """
    return _with_retries(create, classify, policy or RetryPolicy(), sleep, between=find, on_retry=on_retry)


def retry_call(
    call: Callable[[], T],
    classify: Callable[[BaseException], Failure],
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """A read (or any idempotent request) through a client that does not retry by itself (plain httpx):
    retryable failures are tried again after the provider's Retry-After or the policy's backoff, up to
    `policy.attempts`; the rest, and the last, raise the classified `BackendError`. Never use it to create
    something that costs money: that is `create_once`."""
    return _with_retries(call, classify, policy or RetryPolicy(), sleep)


def error_message(body: Any, fallback: str) -> str:
    """The provider's own words in an error body: `{"error": {"message": ...}}` (OpenAI's shape, which most
    providers copy) or `{"message": ...}` (Google's gRPC gateway shape, Together's plain errors)."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("message"):
            return str(body["message"])
    return fallback


def upload_once(
    provider: str,
    content: str,
    find: Callable[[], T | None],
    create: Callable[[], T],
) -> T:
    """The provider's object for this `content` (a hash): found, or created by exactly one of the anytune
    processes that want it at the same moment (they wait on a lock named by provider and content, and each
    looks again once it holds it)."""
    found = find()
    if found is not None:
        return found
    with named_lock(provider, content):
        found = find()
        return found if found is not None else create()


def http_failure(
    provider: str,
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    hints: Mapping[int, str] | None = None,
    never_retry: bool = False,
) -> Failure:
    """The Failure for an HTTP error answer: retryable by status (unless `never_retry`, e.g. OpenAI's
    insufficient_quota 429), waiting what the provider asked for, keeping its message."""
    retryable = is_retryable_status(status) and not never_retry
    what = {401: "refused the credentials", 403: "refused this for these credentials"}.get(status, "answered")
    error = BackendError(
        f"{provider} {what} ({status}): {message}",
        hint=(hints or {}).get(status),
        retryable=retryable,
        provider_message=message,
        status=status,
    )
    return Failure(retryable, error, parse_retry_after(headers))


def connection_failure(provider: str, exc: BaseException, hint: str) -> Failure:
    return Failure(True, BackendError(f"could not reach {provider}: {exc}", retryable=True, hint=hint))


class SdkErrors:
    """One SDK's exceptions turned into anytune's errors, for every call a backend makes through it.

        errors = SdkErrors(classify, lambda: openai.OpenAIError)
        job = errors.call(client.fine_tuning.jobs.retrieve, job_id)

    `classify` maps an exception to a `Failure` (retry or not, with the provider's own words); `base`
    returns the SDK's exception classes (a callable, so the SDK is imported only when a call is made)."""

    def __init__(
        self,
        classify: Callable[[BaseException], Failure],
        base: Callable[[], type[BaseException] | tuple[type[BaseException], ...]],
    ) -> None:
        self.classify = classify
        self._base = base

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the SDK (which retries transient failures itself) and raise what is left as a BackendError."""
        try:
            return fn(*args, **kwargs)
        except self._base() as exc:
            raise self.classify(exc).error from exc

    def list(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """All items of an auto-paginated list, each page fetch covered like `call`."""
        return list(self.iter(fn, *args, **kwargs))

    def iter(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Like `list`, lazily: stop early without fetching the pages that are not needed."""
        try:
            yield from fn(*args, **kwargs)
        except self._base() as exc:
            raise self.classify(exc).error from exc
