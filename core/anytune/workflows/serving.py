"""`anytune serve`: a registered model behind an OpenAI-compatible chat completions endpoint.

The same client code (the official `openai` SDK, LangChain, curl) then calls a local fine-tune or a hosted one;
only `base_url` changes. Requests go through the model's own backend `generate()`, one at a time (a local
model is one set of weights in memory), so whatever anytune can evaluate it can also serve.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from anytune.hookspecs import GenerationParams

if TYPE_CHECKING:
    from anytune.client import EvalTarget
    from anytune.hookspecs import Backend


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):  # type: ignore[no-untyped-def]
    from starlette.responses import JSONResponse

    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status
    )


def _content(value: Any) -> str:
    if isinstance(value, list):  # content parts
        return "".join(p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text")
    return "" if value is None else str(value)


def build_app(target: EvalTarget, backend: Backend, *, api_key: str | None = None, name: str | None = None):  # type: ignore[no-untyped-def]
    """A Starlette app serving `target` as the model `name` (default: its registry reference)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    model_name = name or target.label
    lock = threading.Lock()
    created = int(time.time())

    def authorized(request: Request) -> bool:
        return api_key is None or request.headers.get("authorization") == f"Bearer {api_key}"

    async def models(request: Request) -> Any:
        if not authorized(request):
            return _error(401, "invalid API key", "authentication_error")
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "anytune"}],
            }
        )

    def complete(body: dict[str, Any]) -> str:
        messages = [
            {"role": m.get("role", "user"), "content": _content(m.get("content"))} for m in body["messages"]
        ]
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 256
        params = GenerationParams(
            max_new_tokens=int(limit),
            temperature=float(body.get("temperature") or 0.0),
            top_p=float(body.get("top_p") or 1.0),
            batch_size=1,
        )
        with lock:
            return backend.generate(target.artifact, [messages], params)[0]

    async def chat(request: Request) -> Any:
        from starlette.concurrency import run_in_threadpool

        if not authorized(request):
            return _error(401, "invalid API key", "authentication_error")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "messages: a non-empty list of {role, content} is required", param="messages")
        if body.get("model") not in (None, model_name, target.artifact.model_id):
            return _error(404, f"this server serves {model_name!r}, not {body.get('model')!r}", param="model")
        if int(body.get("n") or 1) != 1:
            return _error(400, "n: only 1 completion per request", param="n")
        try:
            text = await run_in_threadpool(complete, body)
        except Exception as exc:  # the model failed: say so in OpenAI's shape
            return _error(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error")
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        now = int(time.time())
        if body.get("stream"):

            def events() -> Any:
                head = {"id": ident, "object": "chat.completion.chunk", "created": now, "model": model_name}
                first = {
                    **head,
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}
                    ],
                }
                last = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                yield f"data: {json.dumps(first)}\n\n"
                yield f"data: {json.dumps(last)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion",
                "created": now,
                "model": model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
            }
        )

    async def health(_request: Request) -> Any:
        return JSONResponse({"status": "ok", "model": model_name, "provider": target.provider})

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
