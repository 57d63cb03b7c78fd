"""Together models with known sizes, and the price tiers by size (models.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources

import yaml


@dataclass(frozen=True)
class Catalog:
    seen: date
    price_source: str
    tiers: tuple[tuple[float, tuple[float, float, float, float]], ...]
    models: dict[str, float]  # model id -> billions of parameters
    aliases: dict[str, str]

    def resolve(self, name: str) -> str:
        return self.aliases.get(name, name)

    def price_per_million(self, model: str, dpo: bool, full: bool) -> float | None:
        params = self.models.get(self.resolve(model))
        if params is None:
            return None
        column = (2 if dpo else 0) + (1 if full else 0)
        for limit, prices in self.tiers:
            if params <= limit:
                return prices[column]
        return None


@cache
def load_catalog() -> Catalog:
    raw = yaml.safe_load(resources.files("anytune_together").joinpath("models.yaml").read_text())
    models = {mid: float(m["params_b"]) for mid, m in raw["models"].items()}
    aliases = {a: mid for mid, m in raw["models"].items() for a in m.get("aliases", [])}
    tiers = tuple((float(t["max_params_b"]), tuple(t["prices"])) for t in raw["tiers"])
    return Catalog(raw["seen"], " ".join(str(raw["price_source"]).split()), tiers, models, aliases)  # type: ignore[arg-type]
