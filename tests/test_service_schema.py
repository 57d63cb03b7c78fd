"""schemathesis against the running API with an admin token: generated requests for every route and method
in the OpenAPI document; no answer is a 5xx, and every answer (status, content type, body) matches the
document. Jobs go to the OpenAI emulator; data paths that do not exist are refused as bad input."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402

from anytune.client import Client  # noqa: E402
from anytune.registry.access import create_token  # noqa: E402
from anytune.service.app import check_data_paths, create_app  # noqa: E402
from tests.conftest import examples  # noqa: E402

APP = create_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture
def token(openai_emu: Any) -> str:
    client = Client()
    APP.state.client = client  # the app's routes use this test's registry...
    APP.state.registry = client.registry  # ...and so do its tokens (else every request is a 401)
    client.pipeline.may_read = check_data_paths  # as create_app sets it on its own client
    value, _ = create_token(client.registry, "schemathesis", "admin")
    return value


@schema.parametrize()
@settings(max_examples=examples(25), deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_route_answers_as_its_document_says(case: Any, token: str) -> None:
    """Every check but `positive_data_acceptance`: a spec that fits the document's JSON shape can still be
    refused for what it says (an unknown model, a data file that does not exist), with a 4xx in the error
    shape the document gives; that is the point of checking before anything is paid for."""
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
