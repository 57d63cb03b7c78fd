"""What an `openai` SDK exception means for anytune: retry or not, and the provider's own words. OpenAI and
Azure OpenAI share the SDK but not their errors: OpenAI sends its own `code`s (insufficient_quota, ...), Azure
the Microsoft REST guidelines' (its authoring API's `ErrorCode`: invalidPayload, quotaExceeded, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from anytune.plugin import BackendError, Failure, SdkErrors, connection_failure, http_failure

_HINTS = {
    401: "check OPENAI_API_KEY (and OPENAI_BASE_URL if you use a proxy or the emulator)",
    403: "fine-tuning may not be available to this organization any more: OpenAI is winding down self-serve "
    "fine-tuning (see docs/providers/openai.md)",
    404: "check the model, file or job id",
    429: "rate limited: anytune retried with back-off",
}
_NO_QUOTA = "out of quota (insufficient_quota): add credit; retrying will not help"

_AZURE_HINTS = {
    401: "check AZURE_OPENAI_API_KEY (or AZURE_OPENAI_AD_TOKEN) and AZURE_OPENAI_ENDPOINT",
    403: "the key or token may not fine-tune on this resource: check its role (Cognitive Services OpenAI "
    "Contributor) and that fine-tuning is offered in the resource's region",
    404: "check the model, file or job id, and that AZURE_OPENAI_ENDPOINT names the resource that holds them",
    429: "rate limited: anytune retried with back-off",
}


@dataclass(frozen=True)
class CodeRule:
    """What one of the service's error codes means, whatever HTTP status it came with."""

    hint: str
    retry: bool | None = None  # None: as the HTTP status says


# Azure's ErrorCode enumeration (azure-openai-openapi.yaml, 2025-04-01-preview); the codes whose meaning the
# status alone does not carry. conflict, forbidden, notFound, unauthorized, invalidPayload, internalFailure
# and serviceUnavailable say what their status says.
AZURE_CODES = {
    "quotaExceeded": CodeRule(
        "the resource's fine-tuning quota is used up (jobs at once, or the tier's training capacity): wait "
        "for a job to end, or ask for more quota in the Azure portal; retrying now will not help",
        retry=False,
    ),
    "tooManyRequests": CodeRule("rate limited: anytune retried with back-off", retry=True),
    "jsonlValidationFailed": CodeRule(
        "Azure refused the training file's lines: run `anytune validate` on it with --provider azure-openai",
        retry=False,
    ),
    "fileImportFailed": CodeRule(
        "Azure could not import the file from Blob Storage: check AZURE_OPENAI_BLOB_CONTAINER_URL (its SAS "
        "token must allow reads) and that the blob exists",
        retry=False,
    ),
    "contentFilter": CodeRule(
        "Azure's content filter refused the training data: find and remove the records it flags",
        retry=False,
    ),
    "itemDoesAlreadyExist": CodeRule("it exists already: anytune looks it up instead", retry=False),
    "unexpectedEntityState": CodeRule(
        "the job is not in a state that allows this (a cancel after it ended, a resume of a running job)",
        retry=False,
    ),
}


@dataclass(frozen=True)
class Classifier:
    """One service's reading of the SDK's exceptions."""

    provider: str
    hints: Mapping[int, str]
    network_hint: str
    codes: Mapping[str, CodeRule] = field(default_factory=dict)

    def __call__(self, exc: BaseException) -> Failure:
        import openai

        if isinstance(exc, openai.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            message = str(body.get("message") or exc.message)
            code = str(body.get("code") or "")
            hints = dict(self.hints)
            never_retry = False
            if code == "insufficient_quota":  # OpenAI's only 429 that retrying cannot mend
                hints[exc.status_code], never_retry = _NO_QUOTA, True
            rule = self.codes.get(code)
            if rule is not None:
                hints[exc.status_code] = rule.hint
                never_retry = rule.retry is False
            failure = http_failure(
                self.provider,
                exc.status_code,
                f"{message} ({code})" if rule is not None else message,
                dict(exc.response.headers),
                hints=hints,
                never_retry=never_retry,
            )
            if rule is not None and rule.retry and not failure.retryable:
                return Failure(True, failure.error, failure.delay)
            return failure
        if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
            return connection_failure(self.provider, exc, self.network_hint)
        return Failure(False, BackendError(f"{self.provider} client error: {type(exc).__name__}: {exc}"))


def _sdk_errors() -> type[BaseException]:
    import openai

    return openai.OpenAIError


classify = Classifier("OpenAI", _HINTS, "check the network, or OPENAI_BASE_URL")
openai_errors = SdkErrors(classify, _sdk_errors)
azure_errors = SdkErrors(
    Classifier("Azure OpenAI", _AZURE_HINTS, "check the network, or AZURE_OPENAI_ENDPOINT", AZURE_CODES),
    _sdk_errors,
)
