"""Checking recorded emulator exchanges against a provider's published OpenAPI spec (openapi-core)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml

from anytune.testing.asgi import Exchange

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "specs"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "specs"


def normalize(spec: dict[str, Any]) -> dict[str, Any]:
    """Two OpenAPI 3.0 habits found in 3.1 documents, which a 3.1 validator reads wrongly:
    - `exclusiveMinimum: true` (3.0) is read as `exclusiveMinimum: 1`, so `beta: 0.1` would fail; it becomes the
      3.1 form `exclusiveMinimum: <minimum>`;
    - a `discriminator` without `mapping`: openapi-core then looks for `#/components/schemas/<value>`, which may
      not exist; the `oneOf` decides alone;
    - a `type` beside a `oneOf` that already lists the types (Together's `train_on_inputs`: `type: boolean`
      with `oneOf: [boolean, "auto"]` and default "auto"): 3.1 applies both, so its own default would fail."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            for key in ("exclusiveMinimum", "exclusiveMaximum"):
                if isinstance(node.get(key), bool):
                    bound = "minimum" if key == "exclusiveMinimum" else "maximum"
                    if node.pop(key) and bound in node:
                        node[key] = node.pop(bound)
            if isinstance(node.get("discriminator"), dict) and "mapping" not in node["discriminator"]:
                del node["discriminator"]
            if "oneOf" in node and "type" in node:
                del node["type"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        return node

    return walk(spec)


def load(provider: str) -> Any:
    from openapi_core import Config, OpenAPI

    text = (FIXTURES / f"{provider}-openapi.subset.yaml").read_text()
    spec = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    # Some published specs fail strict meta-validation (duplicated `required` entries); their schemas are fine.
    return OpenAPI.from_dict(normalize(spec), config=Config(spec_validator_cls=None))


def error_shape_problems(exchange: Exchange) -> list[str]:
    """Error answers are not listed per operation; check them against the common error schema instead."""
    try:
        error = json.loads(exchange.response_body)["error"]
    except (ValueError, KeyError, TypeError):
        return [f"{exchange.method} {exchange.path} {exchange.status}: not an error body"]
    kinds = (("message", (str,)), ("type", (str,)), ("param", (str, type(None))), ("code", (str, type(None))))
    wrong = [k for k, types in kinds if not isinstance(error.get(k, 0), types)]
    return [
        f"{exchange.method} {exchange.path} {exchange.status}: error.{k} missing or mistyped" for k in wrong
    ]


def problems(openapi: Any, exchange: Exchange, host: str) -> list[str]:
    from openapi_core.testing import MockRequest, MockResponse

    content_type = exchange.request_content_type or "application/json"
    if not content_type.startswith("multipart/"):
        content_type = content_type.split(";")[0]
    request = MockRequest(
        host,
        exchange.method.lower(),
        exchange.path,
        args=dict(parse_qsl(exchange.query)),
        headers=exchange.request_headers,
        data=exchange.request_body,
        content_type=content_type,
    )
    response = MockResponse(
        exchange.response_body,
        status_code=exchange.status,
        content_type=exchange.response_content_type.split(";")[0] or "application/json",
    )
    found: list[str] = []
    checks = [("request", lambda: openapi.validate_request(request))]
    if exchange.status < 400:
        checks.append(("response", lambda: openapi.validate_response(request, response)))
    else:
        found += error_shape_problems(exchange)
    for what, call in checks:
        try:
            call()
        except Exception as exc:
            details = [str(e) for e in getattr(exc.__cause__, "schema_errors", [])] or [
                str(exc.__cause__ or exc)
            ]
            found += [
                f"{exchange.method} {exchange.path} {exchange.status} {what}: "
                f"{(d.strip().splitlines() or [type(exc).__name__])[0]}"
                for d in details
            ]
    return found


def check_all(
    openapi: Any, exchanges: list[Exchange], host: str, deviations: list[tuple[str, str, str]]
) -> tuple[list[str], set[int]]:
    """Problems not explained by a listed deviation, and which deviations occurred."""
    left: list[str] = []
    seen: set[int] = set()
    for exchange in exchanges:
        for problem in problems(openapi, exchange, host):
            hit = next(
                (
                    i
                    for i, (pattern, text, _) in enumerate(deviations)
                    if re.fullmatch(pattern, exchange.path) and text in problem
                ),
                None,
            )
            if hit is None:
                left.append(problem)
            else:
                seen.add(hit)
    return left, seen


def summary(found: list[str]) -> str:
    return "\n".join(sorted({re.sub(r"(ftjob|file|ft)-[0-9a-f-]+", "{id}", p) for p in found}))


def subset_is_current(provider: str) -> bool:
    sys.path.insert(0, str(FIXTURES))
    try:
        from subset import render
    finally:
        sys.path.pop(0)
    full = yaml.load(
        (SHARED / f"{provider}-openapi.yaml").read_text(),
        Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader),
    )
    return render(full, provider) == (FIXTURES / f"{provider}-openapi.subset.yaml").read_text()


def assert_conforms(
    openapi: Any,
    exchanges: list[Exchange],
    host: str,
    deviations: list[tuple[str, str, str]],
    *,
    routes: set[tuple[str, str]],
    statuses: set[int],
) -> None:
    """The run covered `routes` (ids written {id}) and `statuses`, and broke the spec only as listed."""
    seen_routes = {(e.method, re.sub(r"(ftjob|ft|file)-[0-9a-f-]+", "{id}", e.path)) for e in exchanges}
    assert routes <= seen_routes, routes - seen_routes
    assert statuses <= {e.status for e in exchanges}
    left, seen = check_all(openapi, exchanges, host, deviations)
    assert left == [], summary(left)
    assert seen == set(range(len(deviations))), "a listed deviation no longer occurs: drop it"


# ------------------------------------------------------------------------------- Swagger 2.0 (Azure's)


class Swagger2:
    """A Swagger 2.0 document (Microsoft's Azure OpenAI authoring API is one; openapi-core reads OpenAPI 3
    only): each exchange on a path it describes is checked for its documented status, headers, required
    query parameters and, with jsonschema, its JSON bodies (an error against `default`)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.routes = [
            (re.compile(re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path, item)
            for path, item in doc["paths"].items()
        ]

    @classmethod
    def load(cls, name: str) -> Swagger2:
        text = (FIXTURES / name).read_text()
        return cls(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))

    def route(self, exchange: Exchange) -> tuple[str, dict[str, Any]] | None:
        for pattern, path, item in self.routes:
            if pattern.match(exchange.path) and exchange.method.lower() in item:
                return path, item[exchange.method.lower()]
        return None

    def _schema_problems(self, schema: dict[str, Any], body: bytes, where: str) -> list[str]:
        import jsonschema

        try:
            value = json.loads(body)
        except ValueError:
            return [f"{where}: not JSON"]
        validator = jsonschema.Draft4Validator({**schema, "definitions": self.doc["definitions"]})
        return [
            f"{where}: {'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message[:160]}"
            for e in validator.iter_errors(value)
        ]

    def problems(self, exchange: Exchange) -> list[str]:
        found = self.route(exchange)
        if found is None:
            return []
        path, op = found
        where = f"{exchange.method} {path} {exchange.status}"
        problems: list[str] = []
        query = dict(parse_qsl(exchange.query))
        for param in op.get("parameters", []):
            if "$ref" in param:
                param = self.doc["parameters"][param["$ref"].rsplit("/", 1)[-1]]
            if param["in"] == "query" and param.get("required") and param["name"] not in query:
                problems.append(f"{where} request: query parameter {param['name']} missing")
            if param["in"] == "body" and exchange.request_body:
                problems += self._schema_problems(param["schema"], exchange.request_body, f"{where} request")
        responses = op["responses"]
        answer = responses.get(str(exchange.status)) or (
            responses.get("default") if exchange.status >= 400 else None
        )
        if answer is None:
            documented = ", ".join(k for k in responses if k != "default")
            return [*problems, f"{where}: status not documented (the document says {documented})"]
        for header in answer.get("headers", {}):
            if header.lower() not in exchange.response_headers:
                problems.append(f"{where}: header {header} missing")
        if "schema" in answer and exchange.response_body:
            problems += self._schema_problems(answer["schema"], exchange.response_body, f"{where} response")
        return problems
