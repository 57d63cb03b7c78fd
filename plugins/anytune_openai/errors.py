"""What an `openai` SDK exception means for anytune: retry or not, and the provider's own words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from anytune.errors import BackendError
from anytune.remote import Failure, connection_failure, http_failure

T = TypeVar("T")

_HINTS = {
    401: "check OPENAI_API_KEY (and OPENAI_BASE_URL if you use a proxy or the emulator)",
    403: "fine-tuning may not be available to this organization any more: OpenAI is winding down self-serve "
    "fine-tuning (see docs/providers/openai.md)",
    404: "check the model, file or job id",
    429: "rate limited, or out of quota (code insufficient_quota: add credit; retrying will not help)",
}


def classify(exc: BaseException) -> Failure:
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = str(body.get("message") or exc.message)
        return http_failure(
            "OpenAI",
            exc.status_code,
            message,
            dict(exc.response.headers),
            hints=_HINTS,
            never_retry=body.get("code") == "insufficient_quota",
        )
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
        return connection_failure("OpenAI", exc, "check the network, or OPENAI_BASE_URL")
    return Failure(False, BackendError(f"OpenAI client error: {type(exc).__name__}: {exc}"))


def sdk_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call the SDK (which retries transient failures itself) and turn what is left into a BackendError."""
    import openai

    try:
        return fn(*args, **kwargs)
    except openai.OpenAIError as exc:
        raise classify(exc).error from exc


def sdk_list(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
    """All items of an auto-paginated SDK list, each page fetch covered like `sdk_call`."""
    import openai

    try:
        return list(fn(*args, **kwargs))
    except openai.OpenAIError as exc:
        raise classify(exc).error from exc


def sdk_iter(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Like `sdk_list`, lazily: stop early without fetching the pages that are not needed."""
    import openai

    try:
        yield from fn(*args, **kwargs)
    except openai.OpenAIError as exc:
        raise classify(exc).error from exc
