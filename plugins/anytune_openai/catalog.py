"""The fine-tunable models, as data (models.yaml): aliases, methods, limits and tokenizer encodings.

Prices and availability windows (retirement dates, the end of new jobs) live in anytune's pricing catalog
(`anytune.cost`), beside every other provider's, where users can override them.
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

    def retires(self, prices: PriceCatalog | None = None) -> date | None:
        entry = (prices or load_prices()).price("openai", model=self.id)
        return entry.retires if entry else None


@dataclass(frozen=True)
class Catalog:
    models: dict[str, OpenAIModel]

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
        source = prices.retires_source("openai")
        if retires is not None:
            days = (retires - today).days
            if days <= 0:
                problems.append(
                    Problem("error", "base_model", f"{model.id} was retired on {retires} (source: {source})")
                )
            elif days <= WARN_DAYS:
                problems.append(
                    Problem(
                        "warning",
                        "base_model",
                        f"{model.id} and every fine-tune on it stop serving on {retires}, "
                        f"in {days} days (source: {source})",
                    )
                )
        info = prices.providers.get("openai")
        end = info.new_jobs_end if info else None
        if end is not None:
            end_source = " ".join(info.new_jobs_end_source.split()) if info else ""
            days = (end - today).days
            if days < 0:
                problems.append(
                    Problem(
                        "error",
                        "provider",
                        f"OpenAI accepts no new fine-tuning jobs since {end} (source: {end_source})",
                    )
                )
            elif days <= WARN_DAYS:
                problems.append(
                    Problem(
                        "warning",
                        "provider",
                        f"OpenAI accepts no new fine-tuning jobs after {end}, in {days} days (source: {end_source})",
                    )
                )
        return problems


@cache
def load_catalog() -> Catalog:
    raw = yaml.safe_load(resources.files("anytune_openai").joinpath("models.yaml").read_text())
    models = {
        mid: OpenAIModel(
            id=mid,
            aliases=tuple(m.get("aliases", [])),
            methods=tuple(m.get("methods", [])),
            max_example_tokens=int(m["max_example_tokens"]),
            encoding=m.get("encoding", "o200k_base"),
        )
        for mid, m in raw["models"].items()
    }
    return Catalog(models=models)
