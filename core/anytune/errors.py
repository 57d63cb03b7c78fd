"""The exceptions anytune raises, shaped so that a user can act on them.

Every error carries a message (what went wrong, naming the file, line and field where there is one) and an
optional hint (what to do about it). The CLI prints both and exits with `exit_code`: 2 when the input was
wrong (the user must change something), 1 when an operation failed.
"""

from __future__ import annotations

from collections.abc import Sequence


def shorten(text: str, limit: int) -> str:
    """`text`, or its start and its length where it is longer than `limit`: a message quotes the user's bad
    value (a key, a name, a path), never the whole of a huge one."""
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 40, 20)]}... ({len(text):,} characters in all)"


class AnytuneError(Exception):
    """Base class of every error anytune raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = list(details)

    def __str__(self) -> str:
        parts = [self.message, *(f"  {d}" for d in self.details)]
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


class UsageError(AnytuneError):
    """The input was wrong: a job file, a data file, an argument. Nothing was started."""

    exit_code = 2


class SpecError(UsageError):
    """A job specification is invalid; `details` lists each problem as `file:line: field: message`."""


class DataError(UsageError):
    """A data set failed validation; `details` lists every broken line."""


class CapabilityError(UsageError):
    """A backend cannot run the spec as written; raised before anything is uploaded or started."""


class CredentialsError(UsageError):
    """An API key is missing, or the provider refused it: nothing about the spec needs changing."""


class BudgetExceededError(UsageError):
    """The quote for a job is above its `budget_usd`; nothing was uploaded."""


class NotFoundError(UsageError):
    """A job, model or file that the user named does not exist."""


class PluginError(AnytuneError):
    """A backend's plugin failed to load, or two plugins claim one name."""


class UnknownBackendError(PluginError):
    """The user named a provider no installed plugin offers: their input to fix (exit 2)."""

    exit_code = 2


class BackendError(AnytuneError):
    """A backend failed while doing its work (the provider answered with an error, a process died).

    `retryable` tells the core whether trying again can help; `provider_message` keeps the provider's own
    words so that the user sees them unchanged.
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        retryable: bool = False,
        provider_message: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable
        self.provider_message = provider_message
        self.status = status
        self.retry_after = retry_after  # seconds the provider asked to wait, where it asked

    @property
    def credentials(self) -> bool:
        """The provider refused the key (401) or what the key may do (403)."""
        return self.status in (401, 403)


class InvalidTransitionError(AnytuneError):
    """A job was asked to move between two statuses that the neutral status machine does not connect."""


class RegistryError(AnytuneError):
    """The registry database could not be opened, migrated or written."""
