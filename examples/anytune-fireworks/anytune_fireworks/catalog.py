"""Fireworks models anytune knows the size, tokenizer family, context and LoRA limits of (models.yaml).

The size picks the price tier in the pricing catalog; the family picks the tokenizer and chat template the
billable tokens are counted with. Other models are sent as they are, their size and family read from the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from anytune.plugin import family_of, params_from_name

FIREWORKS_MODELS = "accounts/fireworks/models/"


@dataclass(frozen=True)
class FireworksModel:
    id: str
    params_b: float | None
    family: str | None
    context: int | None = None
    known: bool = True


@dataclass(frozen=True)
class Catalog:
    models: dict[str, FireworksModel]
    aliases: dict[str, str]
    max_lora_rank: int
    max_epochs: int
    learning_rate: tuple[float, float]

    def resolve(self, name: str) -> str:
        """A full model name: an alias, a bare Fireworks id (`llama-v3p1-8b-instruct`) or a full name."""
        name = self.aliases.get(name, name)
        return name if name.startswith("accounts/") else FIREWORKS_MODELS + name

    def model(self, name: str) -> FireworksModel:
        mid = self.resolve(name)
        short = mid.rsplit("/", 1)[-1]
        return self.models.get(mid) or FireworksModel(
            mid, params_from_name(short.replace("p", ".")), family_of(short), known=False
        )


@cache
def load_catalog() -> Catalog:
    raw = yaml.safe_load(resources.files("anytune_fireworks").joinpath("models.yaml").read_text())
    models = {
        mid: FireworksModel(mid, float(m["params_b"]), m.get("family") or family_of(mid), m.get("context"))
        for mid, m in raw["models"].items()
    }
    aliases = {a: mid for mid, m in raw["models"].items() for a in m.get("aliases", [])}
    d = raw["defaults"]
    low, high = d["learning_rate"]
    return Catalog(models, aliases, int(d["max_lora_rank"]), int(d["max_epochs"]), (float(low), float(high)))
