"""A server's answers read back: an error answer as the AnytuneError the server raised (same class, message,
hint and details), so code and the CLI handle them alike in both transports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anytune import errors
from anytune.errors import AnytuneError, BackendError

if TYPE_CHECKING:
    import httpx


def json_or_none(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


def server_error(status: int, body: Any, text: str) -> AnytuneError:
    """The server's error as the AnytuneError class it names (a generic one if it names none)."""
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        return BackendError(f"the anytune server answered {status}: {text[:300]}", status=status)
    cls = getattr(errors, str(detail.get("type")), None)
    message, hint, details = detail.get("message", ""), detail.get("hint"), detail.get("details") or []
    exc: AnytuneError
    if cls is BackendError:
        exc = BackendError(message, hint=hint, status=status)
    elif isinstance(cls, type) and issubclass(cls, AnytuneError):
        try:
            exc = cls(message, hint=hint, details=details)
        except TypeError:  # an error class with other arguments: its words all the same
            exc = AnytuneError(message, hint=hint, details=details)
    else:  # AccessDenied, IdempotencyConflict, RequestError: the service's own
        exc = AnytuneError(message, hint=hint, details=details)
    exc.details = list(details)
    exc.status = status  # type: ignore[attr-defined]
    return exc
