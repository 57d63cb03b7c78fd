"""Provider-neutral machinery for emulating a provider's HTTP API, for tests and for rehearsing scripts
without spending money. Each provider's emulator lives in its plugin (offered through the
`register_emulators` hook, served by `anytune emulate NAME`) and is built from these parts:

- `EmulatorBase`: an ASGI app's state lock, Bearer auth, error bodies in the common `{"error": {...}}` shape,
  `ApiError` for handlers, and a recorder of every exchange (to check each one against the provider's spec);
- clocks: `RealClock` (optionally sped up) for people, `ManualClock` stepped by each poll so tests never sleep;
- `Faults`: 429 with Retry-After, 5xx, slow answers, a connection dropped after the server did the work;
- `EmulatorServer`: runs an app on 127.0.0.1 in a thread (tests) or in the foreground (the CLI);
- `nearest_answer` / `base_answer`: deterministic chat completions that tell a fine-tune from its base;
  `practice_answers`: what an emulated RFT policy answers at a step, for the job's grader to score, and
  `grader_runtime` (anytune's scoring rules) to score them where the emulated provider's grader is data;
- `emulated(name, api_key=..., tick=...)`: a plugin's registered emulator, served, with the environment its
  backend reads pointed at it (tests); `anytune.testing.conformance`: the promises every backend keeps.

Needs the `emulators` extra (starlette, uvicorn, python-multipart) once an emulator is built.
"""

from __future__ import annotations

from anytune.graders import runtime as grader_runtime
from anytune.testing.answers import base_answer, nearest_answer, practice_answers
from anytune.testing.asgi import Exchange, Recorder
from anytune.testing.base import ApiError, EmulatorBase, error_body
from anytune.testing.clock import Clock, ManualClock, RealClock
from anytune.testing.faults import Fault, Faults
from anytune.testing.running import close_emulator, emulated, environment
from anytune.testing.server import EmulatorServer, free_port

__all__ = [
    "ApiError",
    "Clock",
    "EmulatorBase",
    "EmulatorServer",
    "Exchange",
    "Fault",
    "Faults",
    "ManualClock",
    "RealClock",
    "Recorder",
    "base_answer",
    "close_emulator",
    "emulated",
    "environment",
    "error_body",
    "free_port",
    "grader_runtime",
    "nearest_answer",
    "practice_answers",
]
