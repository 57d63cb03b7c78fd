"""The fine-tunable models, as data (models.yaml): aliases, methods, limits, availability and prices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources

import yaml

from anytune.hookspecs import Problem

WARN_DAYS = 60  # warn this long before a model retires or the provider stops taking jobs


@dataclass(frozen=True)
class OpenAIModel:
    id: str
    aliases: tuple[str, ...]
    methods: tuple[str, ...]
    max_example_tokens: int
    retires: date | None
    training_price_per_1m: float | None
    source: str


@dataclass(frozen=True)
class Catalog:
    seen: date
    new_jobs_end: date | None
    new_jobs_end_source: str
    price_source: str
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
        problems: list[Problem] = []
        if model.retires is not None:
            days = (model.retires - today).days
            if days <= 0:
                problems.append(
                    Problem(
                        "error",
                        "base_model",
                        f"{model.id} was retired on {model.retires} (source: {model.source})",
                    )
                )
            elif days <= WARN_DAYS:
                problems.append(
                    Problem(
                        "warning",
                        "base_model",
                        f"{model.id} and every fine-tune on it stop serving on {model.retires}, "
                        f"in {days} days (source: {model.source})",
                    )
                )
        if self.new_jobs_end is not None:
            days = (self.new_jobs_end - today).days
            if days < 0:
                problems.append(
                    Problem(
                        "error",
                        "provider",
                        f"OpenAI accepts no new fine-tuning jobs since {self.new_jobs_end} "
                        f"(source: {self.new_jobs_end_source})",
                    )
                )
            elif days <= WARN_DAYS:
                problems.append(
                    Problem(
                        "warning",
                        "provider",
                        f"OpenAI accepts no new fine-tuning jobs after {self.new_jobs_end}, "
                        f"in {days} days (source: {self.new_jobs_end_source})",
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
            retires=m.get("retires"),
            training_price_per_1m=m.get("training_price_per_1m"),
            source=m.get("source", ""),
        )
        for mid, m in raw["models"].items()
    }
    return Catalog(
        seen=raw["seen"],
        new_jobs_end=raw.get("new_jobs_end"),
        new_jobs_end_source=" ".join(str(raw.get("new_jobs_end_source", "")).split()),
        price_source=raw.get("price_source", ""),
        models=models,
    )
