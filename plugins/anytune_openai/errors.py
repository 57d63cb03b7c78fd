"""What an `openai` SDK exception means for anytune: retry or not, and the provider's own words."""

from __future__ import annotations

from anytune.plugin import BackendError, Failure, SdkErrors, connection_failure, http_failure

_HINTS = {
    401: "check OPENAI_API_KEY (and OPENAI_BASE_URL if you use a proxy or the emulator)",
    403: "fine-tuning may not be available to this organization any more: OpenAI is winding down self-serve "
    "fine-tuning (see docs/providers/openai.md)",
    404: "check the model, file or job id",
    429: "rate limited: anytune retried with back-off",
}
_NO_QUOTA = "out of quota (insufficient_quota): add credit; retrying will not help"


def classify(exc: BaseException) -> Failure:
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = str(body.get("message") or exc.message)
        no_quota = body.get("code") == "insufficient_quota"  # the only 429 that retrying cannot mend
        return http_failure(
            "OpenAI",
            exc.status_code,
            message,
            dict(exc.response.headers),
            hints={**_HINTS, 429: _NO_QUOTA} if no_quota else _HINTS,
            never_retry=no_quota,
        )
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
        return connection_failure("OpenAI", exc, "check the network, or OPENAI_BASE_URL")
    return Failure(False, BackendError(f"OpenAI client error: {type(exc).__name__}: {exc}"))


def _sdk_errors() -> type[BaseException]:
    import openai

    return openai.OpenAIError


errors = SdkErrors(classify, _sdk_errors)
sdk_call, sdk_list, sdk_iter = errors.call, errors.list, errors.iter
