"""Bedrock models anytune can customize (models.yaml): region, data layout, limits, hyperparameter ranges,
serving, tokenizer family. A model not listed is refused: Bedrock's customizable models are few and each has
its own rules, so guessing them would only move the refusal to after the upload."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class HyperParameter:
    name: str  # Bedrock's
    type: str  # int | float
    low: float
    high: float
    default: float
    source: str | None = None  # the anytune hyperparameter it comes from
    option: str | None = None  # or the provider option


@dataclass(frozen=True)
class BedrockModel:
    id: str
    family: str
    region: str
    layout: str  # conversation | prompt-completion
    methods: tuple[str, ...]
    records: tuple[int, int]
    max_record_tokens: int
    serving: str  # on-demand | provisioned
    hyperparameters: tuple[HyperParameter, ...] = field(default_factory=tuple)
    params_b: float | None = None


@dataclass(frozen=True)
class Catalog:
    models: dict[str, BedrockModel]
    aliases: dict[str, str]

    def resolve(self, name: str) -> str:
        return self.aliases.get(name, name)

    def model(self, name: str) -> BedrockModel | None:
        return self.models.get(self.resolve(name))


def _model(mid: str, raw: dict[str, Any]) -> BedrockModel:
    hps = tuple(
        HyperParameter(
            name,
            h["type"],
            float(h["range"][0]),
            float(h["range"][1]),
            float(h["default"]),
            h.get("from"),
            h.get("option"),
        )
        for name, h in (raw.get("hyperparameters") or {}).items()
    )
    return BedrockModel(
        id=mid,
        family=raw["family"],
        region=raw["region"],
        layout=raw["layout"],
        methods=tuple(raw["methods"]),
        records=(int(raw["records"][0]), int(raw["records"][1])),
        max_record_tokens=int(raw["max_record_tokens"]),
        serving=raw["serving"],
        hyperparameters=hps,
        params_b=float(raw["params_b"]) if raw.get("params_b") else None,
    )


@cache
def load_catalog() -> Catalog:
    raw = yaml.safe_load(resources.files("anytune_bedrock").joinpath("models.yaml").read_text())
    models = {mid: _model(mid, m) for mid, m in raw["models"].items()}
    aliases = {a: mid for mid, m in raw["models"].items() for a in m.get("aliases", [])}
    return Catalog(models, aliases)
