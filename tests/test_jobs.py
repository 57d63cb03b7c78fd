from __future__ import annotations

import pytest

from anytune.errors import InvalidTransitionError
from anytune.jobs import JobStatus, can_transition, check_transition

S = JobStatus


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.PENDING, S.VALIDATING),
        (S.PENDING, S.QUEUED),
        (S.VALIDATING, S.QUEUED),
        (S.QUEUED, S.RUNNING),
        (S.RUNNING, S.SUCCEEDED),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.CANCELLED),
        (S.RUNNING, S.PAUSED),
        (S.PAUSED, S.RUNNING),
        (S.PAUSED, S.CANCELLED),
        (S.PENDING, S.SUCCEEDED),  # a late poll may skip states
        (S.RUNNING, S.RUNNING),
    ],
)
def test_allowed_transitions(a, b):
    assert can_transition(a, b)
    check_transition(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.SUCCEEDED, S.RUNNING),
        (S.FAILED, S.QUEUED),
        (S.CANCELLED, S.RUNNING),
        (S.SUCCEEDED, S.FAILED),
        (S.RUNNING, S.PENDING),
        (S.QUEUED, S.VALIDATING),
        (S.RUNNING, S.VALIDATING),
    ],
)
def test_refused_transitions(a, b):
    assert not can_transition(a, b)
    with pytest.raises(InvalidTransitionError, match=f"from {a.value} to {b.value}"):
        check_transition(a, b)


def test_terminal_statuses():
    assert {s for s in S if s.terminal} == {S.SUCCEEDED, S.FAILED, S.CANCELLED}
    assert all(s.active for s in S if not s.terminal)
