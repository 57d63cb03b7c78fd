"""Who may call the service, and job creates made at most once: API tokens and idempotency keys, in the
registry's database (SQLite or PostgreSQL alike).

A token is `at_` + 32 random bytes (URL-safe base64); only its SHA-256 is stored, so a copy of the database
gives no one access. Scopes nest: `read` < `submit` < `admin`."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from anytune.errors import AnytuneError, NotFoundError, UsageError
from anytune.jobs import utcnow
from anytune.registry.projects import project_exists
from anytune.registry.store import Registry
from anytune.registry.tables import IdempotencyRow, JobRow, TokenRow

SCOPES = ("read", "submit", "admin")
# a job recorded but not confirmed this long ago, or a key claimed this long ago with nothing recorded: the
# request that was submitting it is taken for dead (a worker finishes the job; the key can be used again)
SUBMIT_GRACE_S = 300.0


def submit_grace_s() -> float:
    """SUBMIT_GRACE_S, or `$ANYTUNE_SUBMIT_GRACE_S` (shorter in crash rehearsals)."""
    return float(os.environ.get("ANYTUNE_SUBMIT_GRACE_S") or SUBMIT_GRACE_S)


PREFIX = "at_"


class AccessDenied(AnytuneError):
    """A request without a valid token, or with one whose scope is too narrow (401 / 403)."""

    def __init__(self, message: str, *, status: int = 401, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class IdempotencyConflict(AnytuneError):
    """The key was used with another body, or its first request is still being handled (409 / 422)."""

    def __init__(self, message: str, *, status: int = 409, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    scope: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    project: str = "default"  # what the token sees and acts in (its admin scope too: that project's only)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        row.id, row.name, row.scope, row.created_at, row.last_used_at, row.revoked_at is not None, row.project
    )


def create_token(registry: Registry, name: str, scope: str) -> tuple[str, TokenInfo]:
    """A new token of the registry's project (returned once, never stored) and what is kept of it."""
    if scope not in SCOPES:
        raise UsageError(f"unknown scope {scope!r}", hint=f"give one of {', '.join(SCOPES)}")
    if not 0 < len(name) <= 200 or "\x00" in name:
        raise UsageError(
            f"a token's name is 1 to 200 characters, without NUL ({len(name)} given)",
            hint="say what the token is for, briefly",
        )
    if not project_exists(registry, registry.owner):
        raise NotFoundError(
            f"no project {registry.owner!r}", hint=f"`anytune projects create {registry.owner}` makes it"
        )
    token = PREFIX + secrets.token_urlsafe(32)
    row = TokenRow(
        id=secrets.token_hex(6),
        project=registry.owner,
        name=name,
        token_hash=_hash(token),
        scope=scope,
        created_at=utcnow(),
    )
    with registry.session() as s, s.begin():
        s.add(row)
    return token, _info(row)


def list_tokens(registry: Registry) -> list[TokenInfo]:
    with registry.session() as s:
        q = select(TokenRow).where(*registry.mine(TokenRow)).order_by(TokenRow.created_at)
        return [_info(r) for r in s.scalars(q)]


def revoke_token(registry: Registry, token_id: str) -> None:
    with registry.session() as s, s.begin():
        row = s.get(TokenRow, token_id)
        if row is None or registry.project not in (None, row.project):
            raise NotFoundError(f"no token {token_id!r}", hint="`anytune tokens list` shows them")
        row.revoked_at = row.revoked_at or utcnow()


def check_token(registry: Registry, token: str | None, needed: str) -> TokenInfo:
    """The token's record if it is valid and its scope covers `needed`; AccessDenied otherwise. Any
    project's token is found here (its record says which project it acts in)."""
    if not token:
        raise AccessDenied("this route needs an API token", hint="send Authorization: Bearer <token>")
    with registry.session() as s, s.begin():
        row = s.scalars(select(TokenRow).where(TokenRow.token_hash == _hash(token))).first()
        if row is None or row.revoked_at is not None:
            raise AccessDenied("unknown or revoked API token", hint="`anytune tokens create` makes one")
        if SCOPES.index(row.scope) < SCOPES.index(needed):
            raise AccessDenied(
                f"this route needs the {needed} scope; the token has {row.scope}",
                status=403,
                hint=f"`anytune tokens create --scope {needed}`",
            )
        row.last_used_at = utcnow()
        return _info(row)


def claim_key(registry: Registry, key: str, body: bytes, job_id: str) -> str | None:
    """Claim an Idempotency-Key for this body, reserving `job_id` (the id the job will be recorded under)
    before submitting: None if the key is new (go ahead, submit as `job_id`, then `complete_key`), or the id
    of the job this key already stands for.

    A key whose first request has not answered yet also gives its job id once that job is recorded: the
    request may have died while submitting, and a worker finishes the submit (`find_existing` first), so
    the job is real either way. IdempotencyConflict if the key came with another body (422), or its first
    request is still before recording anything (409: retry). A first request that died before recording
    frees its key after `SUBMIT_GRACE_S`."""
    digest = hashlib.sha256(body).hexdigest()
    try:
        with registry.session() as s, s.begin():
            s.add(
                IdempotencyRow(
                    project=registry.owner, key=key, body_hash=digest, job_id=job_id, created_at=utcnow()
                )
            )
        return None
    except IntegrityError:
        pass
    with registry.session() as s, s.begin():
        row = s.get(IdempotencyRow, (registry.owner, key), with_for_update=True)
        if row is None:  # released meanwhile (the first request failed): try once more
            return claim_key(registry, key, body, job_id)
        if row.body_hash != digest:
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was used with a different request body",
                status=422,
                hint="use a new key for a new job",
            )
        if row.completed_at is not None or (row.job_id and s.get(JobRow, row.job_id) is not None):
            return row.job_id
        age = (utcnow() - row.created_at).total_seconds()
        if age > submit_grace_s():  # its request died before it recorded anything: this one takes over
            row.job_id, row.created_at = job_id, utcnow()
            return None
    raise IdempotencyConflict(
        f"a request with Idempotency-Key {key!r} is still being handled", hint="retry in a moment"
    )


def complete_key(registry: Registry, key: str, job_id: str) -> None:
    with registry.session() as s, s.begin():
        row = s.get(IdempotencyRow, (registry.owner, key))
        if row is not None:
            row.job_id, row.completed_at = job_id, utcnow()


def release_key(registry: Registry, key: str) -> None:
    """The submit failed before any job was recorded: the key may be used again."""
    with registry.session() as s, s.begin():
        row = s.get(IdempotencyRow, (registry.owner, key))
        if row is not None and row.completed_at is None and s.get(JobRow, row.job_id or "") is None:
            s.delete(row)
