"""schemathesis against the running API with an admin token (of each of two projects): generated requests
for every route and method in the OpenAPI document; no answer is a 5xx, and every answer (status, content
type, body) matches the document. Jobs go to the OpenAI emulator; data paths that do not exist are refused as
bad input."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402

from anytune.client import Client  # noqa: E402
from anytune.registry.access import create_token  # noqa: E402
from anytune.registry.projects import create_project  # noqa: E402
from anytune.service.app import check_data_paths, create_app  # noqa: E402
from tests.conftest import examples  # noqa: E402

APP = create_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(params=["default", "team-b"])
def token(openai_emu: Any, request: pytest.FixtureRequest) -> str:
    """An admin token of the project `default` (where a registry from before projects keeps everything),
    or of a second project. 13 examples a route each (25 in all, as before projects)."""
    client = Client()
    APP.state.client = client  # the app's routes use this test's registry...
    APP.state.registry = client.registry  # ...and so do its tokens (else every request is a 401)
    client.pipeline.may_read = check_data_paths  # as create_app sets it on its own client
    if request.param != "default":
        create_project(client.registry, request.param)
    value, _ = create_token(client.registry.in_project(request.param), "schemathesis", "admin")
    return value


@schema.parametrize()
@settings(max_examples=examples(13), deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_route_answers_as_its_document_says(case: Any, token: str) -> None:
    """Every check but `positive_data_acceptance`: a spec that fits the document's JSON shape can still be
    refused for what it says (an unknown model, a data file that does not exist), with a 4xx in the error
    shape the document gives; that is the point of checking before anything is paid for."""
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
