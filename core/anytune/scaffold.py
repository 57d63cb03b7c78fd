"""`anytune plugins new NAME`: a backend plugin package to start from, written from the templates in
`plugin_template/`. It installs with `pip install -e`, registers through the `anytune` entry point, and its
conformance run fails, naming each method still to write, until the author fills them in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from anytune import __version__
from anytune.errors import UsageError
from anytune.settings import today

NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")

# template -> where it goes in the package ({module} is the import name)
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "{module}/__init__.py",
    "plugin.py.tmpl": "{module}/plugin.py",
    "backend.py.tmpl": "{module}/backend.py",
    "emulator.py.tmpl": "{module}/emulator.py",
    "prices.yaml.tmpl": "{module}/prices.yaml",
    "test_conformance.py.tmpl": "tests/test_conformance.py",
}


@dataclass(frozen=True)
class NewPlugin:
    folder: Path
    module: str
    files: list[Path]


def new_plugin(name: str, directory: Path | None = None, label: str | None = None) -> NewPlugin:
    """Write the package `anytune-NAME` into `directory` (default: ./anytune-NAME); refuse to overwrite."""
    if not NAME.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a plugin name anytune can use",
            hint="lowercase letters and digits, words joined by '-' (e.g. acme or acme-cloud)",
        )
    module = "anytune_" + name.replace("-", "_")
    folder = Path(directory) if directory else Path.cwd() / f"anytune-{name}"
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder} exists and is not empty", hint="choose another --dir, or remove it")
    values = {
        "name": name,
        "module": module,
        "label": label or name.replace("-", " ").title(),
        "Class": "".join(part.title() for part in name.split("-")),
        "ENV": name.replace("-", "_").upper(),
        "anytune_version": __version__,
        "today": today().isoformat(),
    }
    templates = resources.files("anytune").joinpath("plugin_template")
    written = []
    for template, target in FILES.items():
        path = folder / target.format(module=module)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(templates.joinpath(template).read_text()).substitute(values))
        written.append(path)
    typed = folder / module / "py.typed"
    typed.write_text("")
    return NewPlugin(folder, module, [*written, typed])
