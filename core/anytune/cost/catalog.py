"""The pricing catalog: prices, hardware and provider billing rules, as data, with the user's overrides.

The built-in catalog is `prices.yaml` beside this module. Override files (`$ANYTUNE_HOME/prices.yaml`, every
path in `$ANYTUNE_PRICES`, and any given to `load_catalog(extra=...)`) are read after it: their price entries
are consulted first, and their `providers` / `hardware` / `sources` blocks update the built-in ones key by
key. So a negotiated rate or the hourly cost of one's own GPUs is one short file, not a fork.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from anytune.errors import SpecError
from anytune.settings import anytune_home

Unit = Literal["1m_tokens", "hour", "month"]  # month: a recurring cost (model storage)
ANY = "*"


class Eta(BaseModel):
    """How long a provider takes: a fixed overhead (validation, queue) plus tokens at some rate."""

    model_config = ConfigDict(extra="forbid")

    tokens_per_s: float | None = None
    hardware: str | None = Field(
        None, description="or: the hardware the provider trains on (throughput model)"
    )
    overhead_s: float = 0.0
    source: str = ""


class ProviderInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    billing: Literal["tokens", "hours"]
    rule: str = ""
    backend: bool = Field(
        True, description="false: anytune can quote this provider but has no backend for it"
    )
    new_jobs_end: date | None = None
    new_jobs_end_source: str = ""
    eta: Eta | None = None


class Hardware(BaseModel):
    """One machine type: GPUs (count, memory, peak TFLOPS) or CPU cores, with the source of the figures."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["gpu", "cpu"] = "gpu"
    gpu: str | None = None
    gpus: int = 1
    memory_gb: float | None = Field(
        None, description="per GPU; for a CPU machine, its RAM (None: this one's)"
    )
    tflops: float | None = Field(None, description="peak dense bf16 TFLOPS per GPU")
    cores: int | None = Field(None, description="CPU cores (None: this machine's)")
    gflops_per_core: float | None = None
    source: str = ""

    def describe(self) -> str:
        if self.kind == "cpu":
            return f"CPU x{self.cores or os.cpu_count()}"
        return f"{self.gpus}x {self.gpu}" if self.gpus > 1 else str(self.gpu)


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    seen: date
    retires_source: str = ""


class PriceEntry(BaseModel):
    """One price. `model`, `params_b`, `hardware`, `method` and `adapter` say what it applies to."""

    model_config = ConfigDict(extra="forbid")

    provider: str
    model: str | None = None
    params_b: tuple[float, float] | None = Field(None, description="size tier: (above, up to) billions")
    hardware: str | None = None
    flavor: str | None = Field(None, description="the provider's own name for the hardware")
    tier: str | None = Field(
        None,
        description="the service tier it applies to (Azure: standard, globalstandard, developer; hosting)",
    )
    method: list[str] = Field(default_factory=lambda: [ANY])
    adapter: list[str] = Field(default_factory=lambda: [ANY])
    unit: Unit
    price: float = Field(ge=0)
    currency: str = "USD"
    source: str | None = None
    seen: date | None = None
    retires: date | None = None
    serves_until: date | None = Field(
        None, description="when fine-tunes stop serving, where that is later than `retires` (Azure)"
    )
    notes: str = ""
    origin: str = Field("built-in", description="the catalog file this entry came from")

    def matches(
        self,
        method: str | None,
        adapter: str | None,
        model: str | None,
        params_b: float | None,
        hardware: str | None,
        tier: str | None = None,
    ) -> bool:
        if self.model is not None and self.model != model:
            return False
        if self.tier is not None and self.tier != tier:
            return False
        if self.params_b is not None:
            low, high = self.params_b
            if params_b is None or not (low < params_b <= high or (low == 0 and params_b == 0)):
                return False
        if self.hardware is not None and self.hardware != hardware:
            return False
        if hardware is not None and self.hardware is None and self.unit == "hour":
            return False
        if method is not None and ANY not in self.method and method not in self.method:
            return False
        return adapter is None or ANY in self.adapter or _adapter_family(adapter) in self.adapter

    @property
    def specificity(self) -> int:
        return (
            (4 if self.model else 0) + (2 if self.params_b else 0) + (1 if self.hardware or self.tier else 0)
        )


def _adapter_family(adapter: str) -> str:
    """Prices distinguish full training from parameter-efficient training, and within it QLoRA where a
    provider says so; every PEFT adapter is priced like LoRA unless an entry names it."""
    return "full" if adapter == "full" else "lora"


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = "USD"
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    hardware: dict[str, dict[str, Any]] = Field(default_factory=dict)
    prices: list[dict[str, Any]] = Field(default_factory=list)
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict)


class PriceCatalog:
    """The merged catalog. Lookups never guess: no entry means no price, and the caller says so."""

    def __init__(self, files: list[tuple[str, CatalogFile]]) -> None:
        providers: dict[str, dict[str, Any]] = {}
        hardware: dict[str, dict[str, Any]] = {}
        sources: dict[str, dict[str, Any]] = {}
        entries: list[PriceEntry] = []
        self.files = [name for name, _ in files]
        for name, f in files:
            for key, value in f.providers.items():
                providers[key] = {**providers.get(key, {}), **value}
            for key, value in f.hardware.items():
                hardware[key] = {**hardware.get(key, {}), **value}
            for key, value in f.sources.items():
                sources[key] = {**sources.get(key, {}), **value}
            # later files first: an override is consulted before the built-in entries
            entries = [PriceEntry.model_validate({**e, "origin": name}) for e in f.prices] + entries
        self.providers = {k: ProviderInfo.model_validate(v) for k, v in providers.items()}
        self.hardware = {k: Hardware.model_validate(v) for k, v in hardware.items()}
        self.sources = {k: Source.model_validate(v) for k, v in sources.items()}
        self.entries = entries

    def price(
        self,
        provider: str,
        *,
        method: str | None = None,
        adapter: str | None = None,
        model: str | None = None,
        params_b: float | None = None,
        hardware: str | None = None,
        tier: str | None = None,
    ) -> PriceEntry | None:
        """The entry that prices this work: the first file that has one, and in it the most specific."""
        found = [
            e
            for e in self.entries
            if e.provider == provider and e.matches(method, adapter, model, params_b, hardware, tier)
        ]
        if not found:
            return None
        first_origin = found[0].origin
        return max((e for e in found if e.origin == first_origin), key=lambda e: e.specificity)

    def entries_for(self, provider: str) -> list[PriceEntry]:
        return [e for e in self.entries if e.provider == provider]

    def hardware_for(self, provider: str) -> list[str]:
        """The hardware a provider prices by the hour, in catalog order, each once."""
        seen: dict[str, None] = {}
        for e in reversed(self.entries):
            if e.provider == provider and e.hardware and e.unit == "hour":
                seen.setdefault(e.hardware, None)
        return list(seen)

    def source_of(self, entry: PriceEntry) -> tuple[str, date | None]:
        fallback = self.sources.get(entry.provider)
        source = entry.source or (fallback.source if fallback else "") or entry.origin
        seen = entry.seen or (fallback.seen if fallback else None)
        return source, seen

    def retires_source(self, provider: str) -> str:
        s = self.sources.get(provider)
        return s.retires_source if s else ""


def override_paths() -> list[Path]:
    """The user's override files, in the order they apply."""
    paths = []
    home_file = anytune_home() / "prices.yaml"
    if home_file.exists():
        paths.append(home_file)
    for part in os.environ.get("ANYTUNE_PRICES", "").split(os.pathsep):
        if part.strip():
            paths.append(Path(part.strip()).expanduser())
    return paths


def _read(name: str, text: str) -> CatalogFile:
    """Parse one catalog file, naming the line and field of every problem in it."""
    from anytune.jobfile import describe_error, parse_yaml

    raw, lines = parse_yaml(text, name)
    if not isinstance(raw, dict):
        raise SpecError(
            f"{name}: a prices file must be a YAML mapping (providers, hardware, prices, sources)"
        )
    problems: list[str] = []

    def check(model: type[BaseModel], value: Any, loc: tuple[str, ...]) -> None:
        try:
            model.model_validate(value)
        except ValidationError as exc:
            problems.extend(
                describe_error({**e, "loc": (*loc, *e["loc"])}, name, lines) for e in exc.errors()
            )

    check(CatalogFile, raw, ())
    if not problems:
        for i, entry in enumerate(raw.get("prices") or []):
            check(PriceEntry, entry, ("prices", str(i)))
        for key, value in (raw.get("providers") or {}).items():  # an override may set only some fields
            check(
                ProviderInfo,
                {"billing": "tokens", **value} if isinstance(value, dict) else value,
                ("providers", key),
            )
        for key, value in (raw.get("hardware") or {}).items():
            check(Hardware, value, ("hardware", key))
        for key, value in (raw.get("sources") or {}).items():
            check(Source, value, ("sources", key))
    if problems:
        raise SpecError(
            f"{name}: the prices file is invalid ({len(problems)} problem(s))",
            details=problems,
            hint="see docs/pricing.md for the fields of a price entry",
        )
    return CatalogFile.model_validate(raw)


_EXTRA: ContextVar[tuple[str, ...]] = ContextVar("anytune_extra_prices", default=())


@contextmanager
def extra_prices(paths: Iterable[str | Path]) -> Iterator[None]:
    """Within this block every catalog lookup (every backend's quote) also reads `paths`."""
    token = _EXTRA.set(tuple(str(p) for p in paths))
    try:
        yield
    finally:
        _EXTRA.reset(token)


PluginPrices = Callable[[], Mapping[str, str]]
_plugin_prices: PluginPrices = dict


def use_plugin_prices(source: PluginPrices) -> None:
    """Where the plugins' catalogs come from (their `register_prices` hooks, by origin): set by the plugin
    manager, so that this engine reads them without knowing about plugins."""
    global _plugin_prices
    _plugin_prices = source


def plugin_price_files() -> tuple[tuple[str, str], ...]:
    return tuple(sorted(_plugin_prices().items()))


def load_catalog(extra: Iterable[str | Path] = ()) -> PriceCatalog:
    """The built-in catalog, the plugins' catalogs, then the user's override files, then `extra` (last
    wins)."""
    paths = [*override_paths(), *(Path(p).expanduser() for p in (*_EXTRA.get(), *extra))]
    return _load(plugin_price_files(), tuple(str(p) for p in paths), tuple(_mtime(p) for p in paths))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


@lru_cache(maxsize=8)
def _load(
    plugin_files: tuple[tuple[str, str], ...], paths: tuple[str, ...], _mtimes: tuple[float, ...]
) -> PriceCatalog:
    files = [("built-in", _read("anytune/cost/prices.yaml", _builtin_text()))]
    files += [("built-in", _read(origin, text)) for origin, text in plugin_files]
    for p in paths:
        try:
            text = Path(p).read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"{p}: cannot read the prices file: {exc.strerror or exc}") from None
        files.append((p, _read(p, text)))
    return PriceCatalog(files)


def _builtin_text() -> str:
    return resources.files("anytune.cost").joinpath("prices.yaml").read_text(encoding="utf-8")
