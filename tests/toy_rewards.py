"""A reward for the GRPO test: easy for a tiny random model to learn (what the first character is), so a
rising reward shows the RL loop works, in seconds."""

from __future__ import annotations

from typing import Any


def starts_with_space(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    texts = ["".join(m.get("content", "") for m in c) if isinstance(c, list) else str(c) for c in completions]
    return [float(t[:1].isspace()) for t in texts]
