"""An emulator of the Tinker training API, speaking the wire protocol of the official `tinker` SDK (0.38) as
the SDK sends it, read from its source: `anytune emulate tinker`, or `TinkerEmulator(models={...})` in tests.

What it models:
- the session's own requests: `client/config` (API-key auth, httpx transport, uncompressed fwd/bwd),
  `client/dynamic_config`, `create_session`, `session_heartbeat`, `telemetry`, `get_server_capabilities`;
- futures: every training call answers `{request_id, model_id}` at once and its result comes from
  `retrieve_future` (JSON, or protobuf for forward_backward and sampling, as the SDK asks with `Accept`);
  a result is computed when the call arrives, and `pending` answers `try_again` that many times first (queued
  states as the SDK expects them);
- training: `create_model` (a LoRA run on a real small model, `emulated_model`), `get_info`,
  `forward_backward` (protobuf `ForwardBackwardRequest`; `cross_entropy` and `importance_sampling`),
  `optim_step` (Adam), `save_weights` / `load_weights` (the state: adapter, optimizer, step count) under
  `tinker://` paths, `save_weights_for_sampler`;
- sampling: `create_sampling_session` (a saved sampler path or a base model) and `asample` (real sampling,
  protobuf `SampleResponse`);
- what a client-side loop must be tested against: `applied` lists every optimizer step by its `seq_id`, so
  a test can check that no step was applied twice after a saved state; `counters` holds the tokens trained,
  prefilled and sampled, which the service bills.

Base models are local folders named by the names the job uses (`models={"Qwen/Qwen3-8B": path}`).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from anytune.plugin import JobStatus
from anytune.testing import ApiError, Clock, EmulatorBase
from anytune_tinker import emulated_model as em

PROTO = "application/x-protobuf"


class TinkerError(ApiError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.body = {"detail": message}


class TinkerEmulator(EmulatorBase):
    statuses: ClassVar[Mapping[str, JobStatus]] = {}  # no jobs: the loop runs on the client's side
    create_route: ClassVar[tuple[str, str] | None] = None

    def __init__(
        self,
        *,
        api_key: str | None = None,
        clock: Clock | None = None,
        models: Mapping[str, str | Path] | None = None,
        pending: int = 0,
    ) -> None:
        from starlette.routing import Route

        em.warm_imports()  # the server's threads must not be the first to import transformers (a lazy-import race)
        self.models = {name: Path(path) for name, path in (models or {}).items()}
        self.pending = pending  # try_again answers before each result
        self.counters = em.Counters()
        self.runs: dict[str, em.TrainingRun] = {}
        self.states: dict[str, dict[str, Any]] = {}  # tinker:// path -> saved state
        self.sampling: dict[str, tuple[str, str | None]] = {}  # session id -> (base model, sampler path)
        self.sessions: set[str] = set()
        self.finished: set[str] = set()  # sessions their client closed
        self.results: dict[str, tuple[int, Any, str]] = {}  # request id -> (try_agains left, body, type)
        self._ids = itertools.count(1)
        self._samplers: dict[str, em.TrainingRun] = {}  # base model -> a run kept for sampling
        routes = [
            Route(f"/api/v1/{name}", self._route(name), methods=["POST"])
            for name in (
                "client/config", "client/dynamic_config", "create_session", "session_heartbeat", "telemetry",
                "create_model", "get_info", "forward_backward", "optim_step", "save_weights", "load_weights",
                "save_weights_for_sampler", "create_sampling_session", "asample", "retrieve_future",
                "get_server_capabilities",
            )
        ]  # fmt: skip
        routes.append(Route("/api/v1/healthz", self._healthz, methods=["GET"]))
        routes.append(Route("/api/v1/samplers/{sampler_id}", self._get_sampler, methods=["GET"]))
        routes.append(Route("/api/v1/sessions/{session_id}/finish", self._finish_session, methods=["POST"]))
        routes.append(Route("/api/v1/weights_info", self._route("weights_info"), methods=["POST"]))
        super().__init__(api_key=api_key, clock=clock, routes=routes, api_prefix="/api")

    def _authorized(self, headers: dict[str, str]) -> bool:
        key = headers.get("x-api-key", "")
        return bool(key) and (self.api_key is None or key in (self.api_key, f"tml-{self.api_key}"))

    def _error_body(self, status: int, message: str, code: str | None) -> Any:
        return {"detail": message}

    async def _healthz(self, request: Any) -> Any:
        return self._json(200, {"status": "ok"})

    # -------------------------------------------------------------------------------------- routing

    def _route(self, name: str) -> Any:
        handler = getattr(self, "_" + name.replace("/", "_"))

        async def route(request: Any) -> Any:
            if name == "forward_backward":
                body = await request.body()
                return self._handle(lambda: handler(body))
            if name == "retrieve_future":
                accept = request.headers.get("accept", "")
                return await self._with_body(request, lambda b: self._retrieve_future(b, accept))
            return await self._with_body(request, handler)

        return route

    def _future(self, body: Any, kind: str, model_id: str | None = None, samples: int = 0) -> Any:
        request_id = f"req-{next(self._ids)}-{secrets.token_hex(4)}"
        self.results[request_id] = (self.pending, body, kind)
        future: dict[str, Any] = {"request_id": request_id, "model_id": model_id}
        if samples:  # a sampling promise names each sequence it will return
            future["sample_sequence_ids"] = [f"{request_id}:{i}" for i in range(samples)]
        return self._json(200, future)

    def _retrieve_future(self, body: dict[str, Any], accept: str) -> Any:
        from starlette.responses import Response

        request_id = str(body.get("request_id") or "")
        if request_id not in self.results:
            raise TinkerError(404, f"no future {request_id}")
        left, result, kind = self.results[request_id]
        if left > 0:
            self.results[request_id] = (left - 1, result, kind)
            return self._json(200, {"type": "try_again", "queue_state": "active"})
        if kind == "proto":
            if PROTO not in accept:
                raise TinkerError(406, "this result is served as application/x-protobuf only")
            return Response(result, media_type=PROTO)
        return self._json(200, result)

    # ------------------------------------------------------------------------------------- session

    def _client_config(self, body: dict[str, Any]) -> Any:
        return self._json(
            200,
            {
                "pjwt_auth_enabled": False,
                "use_pyqwest_transport": False,
                "proto_compress_fwdbwd": False,
                "sample_use_retrieve_futures": False,
            },
        )

    def _client_dynamic_config(self, body: dict[str, Any]) -> Any:
        return self._json(200, {"refresh_interval_sec": 300})

    def _create_session(self, body: dict[str, Any]) -> Any:
        session = f"session-{secrets.token_hex(6)}"
        self.sessions.add(session)
        return self._json(200, {"type": "create_session", "session_id": session})

    async def _finish_session(self, request: Any) -> Any:
        """`ServiceClient.close()`: the session ends (its heartbeats stop)."""

        def run() -> Any:
            session = request.path_params["session_id"]
            if session not in self.sessions:
                raise TinkerError(404, f"no session {session}")
            self.sessions.discard(session)
            self.finished.add(session)
            return self._json(200, None)

        return self._handle(run)

    def _session_heartbeat(self, body: dict[str, Any]) -> Any:
        return self._json(200, {"type": "session_heartbeat"})

    def _telemetry(self, body: dict[str, Any]) -> Any:
        return self._json(200, {"status": "accepted"})

    def _get_server_capabilities(self, body: dict[str, Any]) -> Any:
        return self._json(200, {"supported_models": [{"model_name": name} for name in self.models]})

    # ------------------------------------------------------------------------------------ training

    def _run(self, model_id: Any) -> em.TrainingRun:
        run = self.runs.get(str(model_id))
        if run is None:
            raise TinkerError(404, f"no training model {model_id}")
        return run

    def _folder(self, base: str) -> Path:
        folder = self._model_folder(base)
        if folder is None:
            raise TinkerError(
                400, f"base model {base!r} is not available; available: {', '.join(self.models)}"
            )
        return folder

    def _model_folder(self, base: str) -> Path | None:
        """The folder a base model name stands for: a name it was given, or a local model folder itself."""
        if base in self.models:
            return self.models[base]
        return Path(base) if base and (Path(base) / "config.json").is_file() else None

    def _create_model(self, body: dict[str, Any]) -> Any:
        base = str(body.get("base_model") or "")
        folder = self._folder(base)
        session = str(body.get("session_id") or "")
        model_id = f"{session}:train:{body.get('model_seq_id', 0)}"
        lora = body.get("lora_config") or {}
        self.runs[model_id] = em.load_run(
            model_id, base, folder, int(lora.get("rank", 32)), lora.get("seed"), lora
        )
        return self._future({"model_id": model_id, "type": "create_model"}, "json", model_id)

    def _get_info(self, body: dict[str, Any]) -> Any:
        run = self._run(body.get("model_id"))
        data = {"arch": "llama", "model_name": run.base_model, "tokenizer_id": run.base_model}
        return self._json(
            200,
            {
                "type": "get_info",
                "model_data": data,
                "model_id": run.model_id,
                "is_lora": True,
                "lora_rank": run.rank,
            },
        )

    def _forward_backward(self, raw: bytes) -> Any:
        from anytune_tinker.wire import decode_forward_backward, encode_forward_backward_output

        request = decode_forward_backward(raw)
        run = self._run(request["model_id"])
        try:
            outputs, metrics = em.forward_backward(
                run, request["data"], request["loss_fn"], not request["forward_only"], self.counters
            )
        except (ValueError, KeyError, IndexError) as exc:
            raise TinkerError(400, f"forward_backward: {exc}") from None
        return self._future(encode_forward_backward_output(outputs, metrics), "proto", run.model_id)

    def _optim_step(self, body: dict[str, Any]) -> Any:
        run = self._run(body.get("model_id"))
        params = body.get("adam_params") or body.get("optimizer_params") or {}
        metrics = em.optim_step(run, params, body.get("seq_id"))
        return self._future({"type": "optim_step", "metrics": metrics}, "json", run.model_id)

    def _save_weights(self, body: dict[str, Any]) -> Any:
        run = self._run(body.get("model_id"))
        name = str(body.get("path") or f"step-{run.steps:06d}")
        path = f"tinker://{run.model_id}/weights/{name}"
        if path in self.states and not body.get("overwrite"):
            raise TinkerError(409, f"{path} exists (pass overwrite=True)")
        self.states[path] = em.snapshot(run)
        return self._future({"type": "save_weights", "path": path}, "json", run.model_id)

    def _load_weights(self, body: dict[str, Any]) -> Any:
        """Onto an existing training model, or (with session_id and model_seq_id: a training client made
        from a saved state, the way a resumed loop starts) onto a new one with the checkpoint's settings."""
        path = str(body.get("path") or "")
        if path not in self.states:
            raise TinkerError(404, f"no saved weights at {path}")
        state = self.states[path]
        if body.get("model_id"):
            run = self._run(body.get("model_id"))
        else:
            model_id = f"{body.get('session_id')}:train:{body.get('model_seq_id', 0)}"
            base = str(body.get("base_model") or state["base_model"])
            run = em.load_run(model_id, base, self._folder(base), int(state["rank"]), 0, state["lora"])
            self.runs[model_id] = run
        em.restore(run, state, with_optimizer=bool(body.get("optimizer", False)))
        return self._future(
            {"type": "load_weights", "path": path, "model_id": run.model_id}, "json", run.model_id
        )

    def _save_weights_for_sampler(self, body: dict[str, Any]) -> Any:
        run = self._run(body.get("model_id"))
        name = body.get("path")
        path = f"tinker://{run.model_id}/sampler_weights/{name or f'ephemeral-{secrets.token_hex(4)}'}"
        self.states[path] = em.snapshot(run)
        if name:
            return self._future({"type": "save_weights_for_sampler", "path": path}, "json", run.model_id)
        session = f"sampling-{secrets.token_hex(6)}"  # no name: a sampling session on these weights, no path
        self.sampling[session] = (run.base_model, path)
        result = {"type": "save_weights_for_sampler", "sampling_session_id": session}
        return self._future(result, "json", run.model_id)

    # ------------------------------------------------------------------------------------ sampling

    def _create_sampling_session(self, body: dict[str, Any]) -> Any:
        path = body.get("model_path")
        if path is not None and path not in self.states:
            raise TinkerError(404, f"no sampler weights at {path}")
        base = str(self.states[path]["base_model"] if path else body.get("base_model") or "")
        self._folder(base)
        session = f"sampling-{secrets.token_hex(6)}"
        self.sampling[session] = (base, path)
        return self._json(200, {"type": "create_sampling_session", "sampling_session_id": session})

    async def _get_sampler(self, request: Any) -> Any:
        def run() -> Any:
            sampler_id = request.path_params["sampler_id"]
            if sampler_id not in self.sampling:
                raise TinkerError(404, f"no sampler {sampler_id}")
            base, path = self.sampling[sampler_id]
            return self._json(200, {"sampler_id": sampler_id, "base_model": base, "model_path": path})

        return self._handle(run)

    def _weights_info(self, body: dict[str, Any]) -> Any:
        path = str(body.get("tinker_path") or "")
        if path not in self.states:
            raise TinkerError(404, f"no weights at {path}")
        state = self.states[path]
        return self._json(
            200, {"base_model": state["base_model"], "is_lora": True, "lora_rank": state.get("rank")}
        )

    def _sampler(self, base: str, path: str | None) -> em.TrainingRun:
        """A model shaped like the weights to sample (its rank, where its adapters are), with them loaded; the
        base alone is a fresh adapter (LoRA's B starts at zero: the base's own outputs)."""
        state = self.states[path] if path else None
        rank, lora = (int(state["rank"]), dict(state["lora"])) if state else (8, {})
        key = f"{base}|{rank}|{sorted(lora.items())}"
        if key not in self._samplers:
            self._samplers[key] = em.load_run(f"sampler:{key}", base, self._folder(base), rank, 0, lora)
            self._samplers[key].pristine = em.snapshot(self._samplers[key])  # type: ignore[attr-defined]
        sampler = self._samplers[key]
        em.restore(sampler, state or sampler.pristine, with_optimizer=False)  # type: ignore[attr-defined]
        return sampler

    def _asample(self, body: dict[str, Any]) -> Any:
        from anytune_tinker.wire import encode_sample_response

        session = body.get("sampling_session_id")
        if session is not None:
            if session not in self.sampling:
                raise TinkerError(404, f"no sampling session {session}")
            base, path = self.sampling[session]
        else:
            path = body.get("model_path")
            base = str(
                self.states[path]["base_model"] if path in self.states else body.get("base_model") or ""
            )
        prompt = [
            t for chunk in (body.get("prompt") or {}).get("chunks", []) for t in chunk.get("tokens", [])
        ]
        if not prompt:
            raise TinkerError(400, "the prompt has no tokens")
        params = dict(body.get("sampling_params") or {})
        stop = params.get("stop")
        if isinstance(stop, list) and all(isinstance(t, int) for t in stop):
            params["stop_tokens"] = stop
        count = int(body.get("num_samples", 1))
        sequences = em.sample(self._sampler(base, path), prompt, params, count, self.counters)
        return self._future(encode_sample_response(sequences), "proto", samples=count)
