"""`anytune.plugin` is the contract (`anytune.hookspecs`) and the kit (`anytune.kit`), and nothing else: every
contract name is there, every kit name is used by some plugin, and docs/plugins.md lists exactly these names
(so the reference cannot drift from the code)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import anytune.hookspecs as contract
import anytune.kit as kit
import anytune.plugin as surface

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"


def _documented(section: str) -> set[str]:
    text = DOC.read_text(encoding="utf-8")
    block = text.split(f"<!-- {section} -->", 1)[1].split(f"<!-- /{section} -->", 1)[0]
    names: set[str] = set()
    for row in block.splitlines()[2:]:  # after the header and the rule
        first = row.split("|")[1]
        names |= set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", first))
    return names


def test_the_surface_is_the_contract_and_the_kit():
    assert surface.__all__ == [*surface.CONTRACT, *surface.KIT]
    assert set(surface.CONTRACT) == set(contract.__all__) - {"hookspec", "AnytuneSpec"}
    assert set(surface.KIT) == set(kit.__all__) and not set(surface.CONTRACT) & set(surface.KIT)
    assert all(hasattr(surface, name) for name in surface.__all__)
    assert set(contract.Limits.model_fields) == {"min_examples", "max_seq_length"}


def test_docs_plugins_md_lists_every_name_and_no_other():
    assert _documented("contract") == set(surface.CONTRACT)
    assert _documented("kit") == set(surface.KIT)


def test_every_kit_helper_is_used_by_a_plugin():
    """A helper no plugin uses is not part of the kit (the core keeps it to itself)."""
    sources = [
        *(ROOT / "plugins").rglob("*.py"),
        *(ROOT / "examples" / "anytune-fireworks").rglob("*.py"),
        *(ROOT / "core" / "anytune" / "plugin_template").glob("*.tmpl"),
    ]
    used: set[str] = set()
    for path in sources:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".py":
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ImportFrom) and node.module == "anytune.plugin":
                    used |= {alias.name for alias in node.names}
        else:  # a template: the names its `from anytune.plugin import` lines bring in
            for block in re.findall(
                r"from anytune\.plugin import \(([^)]*)\)|from anytune\.plugin import ([^\n]*)", text
            ):
                used |= {n.strip() for part in block for n in part.split(",") if n.strip()}
    assert sorted(set(surface.KIT) - used) == []
