"""What a `together` SDK exception means for anytune: retry or not, and Together's own words."""

from __future__ import annotations

from anytune.plugin import BackendError, Failure, SdkErrors, connection_failure, error_message, http_failure

_HINTS = {
    401: "check TOGETHER_API_KEY (and TOGETHER_BASE_URL, without /v1, for the emulator)",
    403: "this account may not be allowed to fine-tune this model",
    404: "check the model, file or job id",
    429: "rate limited (Together's dynamic limits); anytune retried with back-off",
}


def classify(exc: BaseException) -> Failure:
    import together

    if isinstance(exc, together.APIStatusError):
        message = error_message(exc.body, exc.message)
        return http_failure("Together", exc.status_code, message, dict(exc.response.headers), hints=_HINTS)
    if isinstance(exc, together.APIConnectionError | together.APITimeoutError):
        return connection_failure("Together", exc, "check the network, or TOGETHER_BASE_URL")
    if isinstance(exc, ValueError):  # the SDK's own checks against the model's limits
        return Failure(False, BackendError(f"Together's client refused the request: {exc}"))
    return Failure(False, BackendError(f"Together client error: {type(exc).__name__}: {exc}"))


def _sdk_errors() -> tuple[type[BaseException], ...]:
    import together

    return (together.TogetherError, ValueError)  # ValueError: the SDK's own checks of a request


errors = SdkErrors(classify, _sdk_errors)
sdk_call = errors.call
