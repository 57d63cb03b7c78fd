"""The fine-tunable models, as data: aliases, methods, limits and tokenizer encodings (models.yaml for
OpenAI, azure_models.yaml for Azure OpenAI, which also names the training tiers each model offers).

Prices and availability windows (retirement dates, the end of new jobs) live in the plugin's prices.yaml,
merged into anytune's pricing catalog, where users can override them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources

import yaml

from anytune.plugin import PriceCatalog, Problem
from anytune.plugin import load_catalog as load_prices

WARN_DAYS = 60  # warn this long before a model retires or the provider stops taking jobs


@dataclass(frozen=True)
class OpenAIModel:
    id: str
    aliases: tuple[str, ...]
    methods: tuple[str, ...]
    max_example_tokens: int
    encoding: str
    provider: str = "openai"
    tiers: tuple[str, ...] = ()  # Azure: standard, globalstandard, developer
    regions: tuple[str, ...] = ()  # Azure: the regions that offer standard (regional) training

    def retires(self, prices: PriceCatalog | None = None) -> date | None:
        """The day the model takes no new fine-tuning jobs, from the first catalog entry for it that says
        (the user's override files come first), whatever tier or method the entry prices."""
        for entry in (prices or load_prices()).entries_for(self.provider):
            if entry.model == self.id and entry.retires:
                return entry.retires
        return None

    def serves_until(self, prices: PriceCatalog | None = None) -> date | None:
        """The day fine-tunes of the model stop serving: `serves_until` where the provider retires serving
        later than training (Azure), else the retirement date."""
        for entry in (prices or load_prices()).entries_for(self.provider):
            if entry.model == self.id and entry.serves_until:
                return entry.serves_until
        return self.retires(prices)


@dataclass(frozen=True)
class Catalog:
    models: dict[str, OpenAIModel]
    provider: str = "openai"
    label: str = "OpenAI"
    global_training_regions: tuple[str, ...] = ()

    def resolve(self, name: str) -> OpenAIModel | None:
        if name in self.models:
            return self.models[name]
        return next((m for m in self.models.values() if name in m.aliases), None)

    def names(self) -> dict[str, str]:
        """Every accepted name (id or alias) -> model id."""
        out = {m.id: m.id for m in self.models.values()}
        out.update({a: m.id for m in self.models.values() for a in m.aliases})
        return out

    def availability(self, model: OpenAIModel, today: date) -> list[Problem]:
        """Refuse a retired model or a job after the cutoff; warn when either is near."""
        prices = load_prices()
        problems: list[Problem] = []
        retires = model.retires(prices)
        serves = model.serves_until(prices)
        source = prices.retires_source(self.provider)
        if retires is not None:
            days = (retires - today).days
            later = f"; its fine-tunes serve until {serves}" if serves and serves != retires else ""
            if days <= 0:
                problems.append(
                    Problem(
                        "error",
                        "base_model",
                        f"{model.id} was retired {'for fine-tuning ' if later else ''}on {retires}{later} "
                        f"(source: {source})",
                    )
                )
            elif days <= WARN_DAYS:
                what = (
                    "takes no new fine-tuning jobs from"
                    if later
                    else "and every fine-tune on it stop serving on"
                )
                problems.append(
                    Problem(
                        "warning",
                        "base_model",
                        f"{model.id} {what} {retires}, in {days} days{later} (source: {source})",
                    )
                )
        info = prices.providers.get(self.provider)
        end = info.new_jobs_end if info else None
        if end is not None:
            end_source = " ".join(info.new_jobs_end_source.split()) if info else ""
            days = (end - today).days
            if days < 0:
                problems.append(
                    Problem(
                        "error",
                        "provider",
                        f"{self.label} accepts no new fine-tuning jobs since {end} (source: {end_source})",
                    )
                )
            elif days <= WARN_DAYS:
                problems.append(
                    Problem(
                        "warning",
                        "provider",
                        f"{self.label} accepts no new fine-tuning jobs after {end}, in {days} days "
                        f"(source: {end_source})",
                    )
                )
        return problems


@cache
def load_catalog(file: str = "models.yaml", provider: str = "openai", label: str = "OpenAI") -> Catalog:
    raw = yaml.safe_load(resources.files("anytune_openai").joinpath(file).read_text())
    models = {
        mid: OpenAIModel(
            id=mid,
            aliases=tuple(m.get("aliases", [])),
            methods=tuple(m.get("methods", [])),
            max_example_tokens=int(m["max_example_tokens"]),
            encoding=m.get("encoding", "o200k_base"),
            provider=provider,
            tiers=tuple(m.get("tiers", [])),
            regions=tuple(m.get("regions", [])),
        )
        for mid, m in raw["models"].items()
    }
    regions = tuple(raw.get("global_training_regions", []))
    return Catalog(models=models, provider=provider, label=label, global_training_regions=regions)
