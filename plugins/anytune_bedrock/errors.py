"""What a boto3 (botocore) exception means for anytune: retry or not, and AWS's own words."""

from __future__ import annotations

from anytune.plugin import BackendError, Failure, SdkErrors, connection_failure, http_failure

_HINTS = {
    400: "Bedrock refused the request as written (its message says which field)",
    401: "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the role)",
    403: "the credentials may not do this: the caller needs bedrock:*ModelCustomizationJob and s3 access, and "
    "the role (role_arn) must trust bedrock.amazonaws.com",
    404: "check the job name, the model id and the region (provider_options.bedrock.region)",
    429: "throttled by AWS; anytune retried with back-off",
}
THROTTLING = {"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"}


def classify(exc: BaseException) -> Failure:
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, EndpointConnectionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 400)
        code = str(error.get("Code") or "")
        if code in THROTTLING:
            status = 429
        message = f"{code}: {error.get('Message') or exc}" if code else str(exc)
        return http_failure("Bedrock", status, message, meta.get("HTTPHeaders") or {}, hints=_HINTS)
    if isinstance(exc, EndpointConnectionError | ConnectionError):
        return connection_failure("Bedrock", exc, "check the network, the region, or AWS_ENDPOINT_URL")
    if isinstance(exc, BotoCoreError):
        return Failure(False, BackendError(f"AWS client error: {exc}", hint=_HINTS[401]))
    return Failure(False, BackendError(f"AWS client error: {type(exc).__name__}: {exc}"))


def _sdk_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


errors = SdkErrors(classify, _sdk_errors)
aws_call = errors.call
