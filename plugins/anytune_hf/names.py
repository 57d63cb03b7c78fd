"""The names anytune gives what it makes on the Hub, derived from its job id so that they are found again
after a crash: the label on a job, an AutoTrain project, a model repo."""

from __future__ import annotations

import hashlib
import re


def job_label(job_id: str) -> str:
    return hashlib.sha1(job_id.encode()).hexdigest()[:16]


def slug(text: str) -> str:
    """A repo-name-safe form of `text` (letters, digits, `.`, `_`, `-`; at most 60 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60] or "model"
