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
    from anytune.api import EvalTarget
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
    from starlette.routing import Route

    served = _Served(target, backend, api_key, name or target.label)
    return Starlette(
        routes=[
            Route("/v1/models", served.models, methods=["GET"]),
            Route("/v1/chat/completions", served.chat, methods=["POST"]),
            Route("/health", served.health, methods=["GET"]),
        ]
    )


class _Served:
    """One model behind the endpoint: requests answered one at a time (a local model is one set of weights in
    memory), in OpenAI's shapes."""

    def __init__(self, target: EvalTarget, backend: Backend, api_key: str | None, model_name: str) -> None:
        self.target, self.backend, self.api_key, self.model_name = target, backend, api_key, model_name
        self.lock = threading.Lock()
        self.created = int(time.time())

    def authorized(self, request: Any) -> bool:
        return self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def models(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        if not self.authorized(request):
            return _error(401, "invalid API key", "authentication_error")
        model = {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "anytune"}
        return JSONResponse({"object": "list", "data": [model]})

    def complete(self, body: dict[str, Any]) -> str:
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
        with self.lock:
            return self.backend.generate(self.target.artifact, [messages], params)[0]

    async def chat(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool

        if not self.authorized(request):
            return _error(401, "invalid API key", "authentication_error")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "messages: a non-empty list of {role, content} is required", param="messages")
        if body.get("model") not in (None, self.model_name, self.target.artifact.model_id):
            return _error(
                404, f"this server serves {self.model_name!r}, not {body.get('model')!r}", param="model"
            )
        if int(body.get("n") or 1) != 1:
            return _error(400, "n: only 1 completion per request", param="n")
        try:
            text = await run_in_threadpool(self.complete, body)
        except Exception as exc:  # the model failed: say so in OpenAI's shape
            return _error(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error")
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if body.get("stream"):
            return self._streamed(ident, text)
        return self._answer(ident, text)

    def _answer(self, ident: str, text: str) -> Any:
        from starlette.responses import JSONResponse

        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
        head = {
            "id": ident,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
        }
        return JSONResponse({**head, "choices": [choice]})

    def _streamed(self, ident: str, text: str) -> Any:
        from starlette.responses import StreamingResponse

        head = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model_name,
        }

        def events() -> Any:
            delta = {"role": "assistant", "content": text}
            first = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            last = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            yield f"data: {json.dumps(first)}\n\n"
            yield f"data: {json.dumps(last)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def health(self, _request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok", "model": self.model_name, "provider": self.target.provider})
