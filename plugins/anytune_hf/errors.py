"""What a `huggingface_hub` exception means for anytune: retry or not, and the Hub's own words.

The hub client retries 429 and 5xx on its uploads and downloads, but not on the Jobs calls (`run_job`,
`inspect_job`, `cancel_job`, `list_jobs` use its plain session): reads go through `retry_call`, and a job is
created through `create_once`, which looks for the job by its label before trying again."""

from __future__ import annotations

from anytune.plugin import BackendError, Failure, SdkErrors, connection_failure, http_failure

_HINTS = {
    401: "check HF_TOKEN (a write token), and HF_ENDPOINT for the emulator",
    402: "Jobs need a positive credit balance on the account or organization",
    403: "the token may not write to this namespace, or run Jobs there",
    404: "check the namespace, the repo or the job id",
    429: "rate limited by the Hub; anytune retried with back-off",
}


def classify(exc: BaseException) -> Failure:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return Failure(
            False,
            BackendError(
                "the hub client is in offline mode (HF_HUB_OFFLINE is set)",
                hint="unset HF_HUB_OFFLINE to send jobs to Hugging Face",
            ),
        )
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        response = exc.response
        message = exc.server_message or str(exc).splitlines()[0]
        return http_failure(
            "Hugging Face", response.status_code, message, dict(response.headers), hints=_HINTS
        )
    if isinstance(exc, httpx2.TransportError):
        return connection_failure("Hugging Face", exc, "check the network, or HF_ENDPOINT")
    return Failure(False, BackendError(f"Hugging Face client error: {type(exc).__name__}: {exc}"))


def _sdk_errors() -> tuple[type[BaseException], ...]:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    return (HfHubHTTPError, OfflineModeIsEnabled, httpx2.TransportError)


errors = SdkErrors(classify, _sdk_errors)
