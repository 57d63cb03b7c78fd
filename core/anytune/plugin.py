"""Everything a backend plugin needs, in one import:

    from anytune.plugin import Backend, Capabilities, PreparedData, hookimpl, token_priced, ...

Two lists make it, and `__all__` is both:
- `CONTRACT` (`anytune.hookspecs`, readable in one file): the hooks, what a backend implements (`Backend`)
  and the types it receives, returns and raises;
- `KIT` (`anytune.kit`): the helpers every provider needs, written once (data, tokens, prices, retries and
  creates that never run twice, places and time).

Anything a plugin imports from elsewhere in `anytune` (except `anytune.testing`, for emulators and the
conformance suite) is not part of the promise: the core may move its internals freely. docs/plugins.md's
reference lists every name here (a test keeps the two the same).
"""

from __future__ import annotations

from anytune import hookspecs, kit
from anytune.hookspecs import *  # noqa: F403
from anytune.kit import *  # noqa: F403

CONTRACT: list[str] = [name for name in hookspecs.__all__ if name not in ("hookspec", "AnytuneSpec")]
KIT: list[str] = list(kit.__all__)

__all__ = [*CONTRACT, *KIT]
