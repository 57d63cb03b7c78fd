"""Finding and loading plugins: entry points of the group ``anytune``, each loaded on its own.

A plugin that fails to import, or whose hook raises, is recorded with its error and skipped; the other
plugins and every command that does not need the broken one keep working. Asking for a backend of a broken
plugin gives that plugin's error, not "unknown backend".
"""

from __future__ import annotations

import difflib
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from anytune import hookspecs
from anytune.cost.catalog import use_plugin_prices
from anytune.errors import PluginError, UnknownBackendError
from anytune.evaluation.metrics import BUILTIN_METRICS
from anytune.hookspecs import Backend, EmulatorInfo
from anytune.secrets import COMMON_SECRETS, register_env_secrets

ENTRY_POINT_GROUP = "anytune"


@dataclass
class PluginInfo:
    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    backends: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    emulators: list[str] = field(default_factory=list)
    prices: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    error: str | None = None
    error_detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class PluginManager:
    """anytune's pluggy manager, plus the backends and metrics the plugins registered."""

    def __init__(self, *, load_entry_points: bool = True, group: str = ENTRY_POINT_GROUP) -> None:
        self._pm = pluggy.PluginManager("anytune")
        self._pm.add_hookspecs(hookspecs.AnytuneSpec)
        self._infos: dict[str, PluginInfo] = {}
        self._backends: dict[str, Backend] = {}
        self._metrics: dict[str, Callable[[str, str], float]] = {}
        self._emulators: dict[str, EmulatorInfo] = {}
        self._prices: dict[str, str] = {}
        self._claims: dict[tuple[str, str], dict[str, Any]] = {}  # (kind, name) -> {plugin: what it offers}
        register_env_secrets(COMMON_SECRETS)
        if load_entry_points:
            self.load_entry_points(group)

    # ----------------------------------------------------------------------------------------- loading

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
            if ep.name in self._infos:
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
            )
            try:
                plugin = ep.load()
            except BaseException as exc:  # a plugin's import may raise anything, even SystemExit
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self._fail(info, f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
                continue
            self._add(plugin, info)

    def register(self, plugin: Any, name: str | None = None) -> PluginInfo:
        """Register a plugin object in-process (tests, notebooks, applications embedding anytune)."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        info = PluginInfo(name=name, module=getattr(plugin, "__name__", type(plugin).__name__))
        self._add(plugin, info)
        return info

    def _add(self, plugin: Any, info: PluginInfo) -> None:
        try:
            self._pm.register(plugin, name=info.name)
        except Exception as exc:
            self._fail(info, f"not a valid anytune plugin: {exc}")
            return
        self._infos[info.name] = info
        self._collect(plugin, info)

    def _collect(self, plugin: Any, info: PluginInfo) -> None:
        """Call this plugin's registration hooks one at a time, so that one broken plugin stays alone."""
        found: dict[str, Backend] = {}
        metrics: dict[str, Callable[[str, str], float]] = {}
        emulators: dict[str, EmulatorInfo] = {}
        prices: dict[str, str] = {}

        def register_backend(backend: Backend) -> None:
            if not isinstance(backend, Backend):
                raise TypeError(f"register() expects an anytune.hookspecs.Backend, got {type(backend)!r}")
            name = getattr(backend, "name", None)
            if not isinstance(name, str) or not name:
                raise TypeError(f"{type(backend).__name__} has no `name`")
            found[name] = backend

        def register_metric(name: str, fn: Callable[[str, str], float]) -> None:
            metrics[name] = fn

        def register_emulator(emulator: EmulatorInfo) -> None:
            if not isinstance(emulator, EmulatorInfo):
                raise TypeError(f"register() expects an anytune.plugin.EmulatorInfo, got {type(emulator)!r}")
            emulators[emulator.name] = emulator

        def register_prices(origin: str, text: str) -> None:
            prices[origin] = text

        for hook_name, register in (
            ("register_backends", register_backend),
            ("register_metrics", register_metric),
            ("register_emulators", register_emulator),
            ("register_prices", register_prices),
        ):
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                try:
                    impl.function(register)
                except Exception as exc:
                    self._fail(info, f"{hook_name} raised {type(exc).__name__}: {exc}")
                    self._pm.unregister(plugin)
                    return
        for name, backend in found.items():
            register_env_secrets(getattr(backend, "secrets", ()))
            self._claim("backend", name, backend, info, self._backends)
        for name, fn in metrics.items():
            if name in BUILTIN_METRICS:
                info.conflicts.append(f"metric {name!r} is a built-in metric's name; not registered")
                continue
            self._claim("metric", name, fn, info, self._metrics)
        self._emulators.update(emulators)
        self._prices.update(prices)
        info.backends = sorted(found)
        info.metrics = sorted(metrics)
        info.emulators = sorted(emulators)
        info.prices = sorted(prices)

    def _claim(self, kind: str, name: str, thing: Any, info: PluginInfo, table: dict[str, Any]) -> None:
        """Give `name` to `info`'s plugin, unless another plugin claims it too: then neither gets it (a plugin
        must not silently shadow another's backend, which may read another provider's key), unless the user
        chose one in $ANYTUNE_PREFER (`name=plugin,...`)."""
        claims = self._claims.setdefault((kind, name), {})
        claims[info.name] = thing
        if len(claims) == 1:
            table[name] = thing
            return
        chosen = preferences().get(name)
        if chosen in claims:
            table[name] = claims[chosen]
        else:
            table.pop(name, None)
        owners = list(claims)
        for owner in owners:
            note = f"{kind} {name!r} is also offered by {', '.join(o for o in owners if o != owner)}"
            note += f"; {chosen!r} chosen in ANYTUNE_PREFER" if chosen in owners else "; refused for both"
            owner_info = self._infos.get(owner, info)
            owner_info.conflicts = [c for c in owner_info.conflicts if not c.startswith(f"{kind} {name!r}")]
            owner_info.conflicts.append(note)

    def _fail(self, info: PluginInfo, message: str) -> None:
        info.error = message
        info.error_detail = traceback.format_exc()
        self._infos[info.name] = info

    # ----------------------------------------------------------------------------------------- queries

    @property
    def hook(self) -> Any:
        return self._pm.hook

    def plugins(self) -> list[PluginInfo]:
        return sorted(self._infos.values(), key=lambda i: i.name)

    def backend_names(self) -> list[str]:
        return sorted(self._backends)

    def metrics(self) -> dict[str, Callable[[str, str], float]]:
        return dict(self._metrics)

    def price_files(self) -> dict[str, str]:
        """The plugins' pricing catalogs (`register_prices`), by origin."""
        return dict(self._prices)

    def emulators(self) -> dict[str, EmulatorInfo]:
        """The provider API emulators the plugins offer (`anytune emulate NAME`), by name."""
        return dict(sorted(self._emulators.items()))

    def add_commands(self, cli: Any) -> None:
        """Let each plugin add its own CLI commands (`register_commands`); a plugin whose hook raises is
        marked broken, and the others' commands stay."""
        for impl in self._pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli)
            except Exception as exc:
                info = self._infos.get(impl.plugin_name)
                if info is not None:
                    self._fail(info, f"register_commands raised {type(exc).__name__}: {exc}")

    def get_backend(self, name: str) -> Backend:
        if name in self._backends:
            return self._backends[name]
        owners = list(self._claims.get(("backend", name), {}))
        if len(owners) > 1:
            raise PluginError(
                f"backend {name!r} is offered by several plugins ({', '.join(owners)}); none is used",
                hint=f"choose one: ANYTUNE_PREFER={name}={owners[0]} (or uninstall the other)",
            )
        broken = self._infos.get(name)
        if broken is not None and broken.error:
            raise PluginError(
                f"backend {name!r} is unavailable: its plugin failed to load: {broken.error}",
                hint="`anytune plugins list` shows every plugin and its error; reinstall or fix the plugin",
            )
        known = self.backend_names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownBackendError(
            f"unknown backend {name!r}; installed: {', '.join(known) or 'none'}",
            hint=hint + "install a plugin that provides it (`pip install anytune-<provider>`)",
        )


def preferences() -> dict[str, str]:
    """$ANYTUNE_PREFER: `name=plugin,...`, which plugin serves a backend or metric name several offer."""
    out = {}
    for part in os.environ.get("ANYTUNE_PREFER", "").split(","):
        name, sep, plugin = part.partition("=")
        if sep and name.strip() and plugin.strip():
            out[name.strip()] = plugin.strip()
    return out


_default: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, loading entry points on first use."""
    global _default
    if _default is None:
        _default = PluginManager()
    return _default


def _plugin_prices() -> dict[str, str]:
    return get_plugin_manager().price_files()


use_plugin_prices(_plugin_prices)  # the pricing catalog reads the plugins' prices through the manager


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (after installing a plugin in the same process)."""
    global _default
    _default = None
