"""What a failed Fireworks request means for anytune: retry or not, and Fireworks' own words.

Fireworks' control plane answers errors in the gRPC gateway's shape (`{"code": 3, "message": "..."}`); its
OpenAI-compatible inference answers OpenAI's (`{"error": {"message": ...}}`). Both are read here."""

from __future__ import annotations

from anytune.plugin import BackendError, Failure, connection_failure, error_message, http_failure

_HINTS = {
    401: "check FIREWORKS_API_KEY (and FIREWORKS_BASE_URL for the emulator)",
    403: "this key's account may not fine-tune this model (check FIREWORKS_ACCOUNT_ID)",
    404: "check the model, dataset or job name (accounts/<account>/...)",
    429: "rate limited by Fireworks; anytune retried with back-off",
}


def classify(exc: BaseException) -> Failure:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        try:
            body = response.json()
        except ValueError:
            body = None
        message = error_message(body, response.text[:200] or response.reason_phrase)
        return http_failure("Fireworks", response.status_code, message, dict(response.headers), hints=_HINTS)
    if isinstance(exc, httpx.TransportError):
        return connection_failure("Fireworks", exc, "check the network, or FIREWORKS_BASE_URL")
    return Failure(False, BackendError(f"Fireworks client error: {type(exc).__name__}: {exc}"))
