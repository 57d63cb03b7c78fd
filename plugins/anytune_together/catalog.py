"""Together models anytune knows the size and tokenizer family of (models.yaml).

The size picks the price tier in anytune's pricing catalog (`anytune.cost`); the family picks the tokenizer
and chat template the billable tokens are counted with. Other models are sent as they are, checked against
Together's own limits endpoint, and their size and family read from the name where it says them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from anytune.plugin import family_of, params_from_name


@dataclass(frozen=True)
class TogetherModel:
    id: str
    params_b: float | None
    family: str | None


@dataclass(frozen=True)
class Catalog:
    models: dict[str, TogetherModel]
    aliases: dict[str, str]

    def resolve(self, name: str) -> str:
        return self.aliases.get(name, name)

    def model(self, name: str) -> TogetherModel:
        mid = self.resolve(name)
        known = self.models.get(mid)
        return known or TogetherModel(mid, params_from_name(mid), family_of(mid))


@cache
def load_catalog() -> Catalog:
    raw = yaml.safe_load(resources.files("anytune_together").joinpath("models.yaml").read_text())
    models = {
        mid: TogetherModel(mid, float(m["params_b"]), m.get("family") or family_of(mid))
        for mid, m in raw["models"].items()
    }
    aliases = {a: mid for mid, m in raw["models"].items() for a in m.get("aliases", [])}
    return Catalog(models, aliases)
