"""`anytune plugins new NAME`: a backend plugin package to start from, written from the templates in
`plugin_template/`. It installs with `pip install -e`, registers through the `anytune` entry point, and its
conformance run fails, naming each method still to write, until the author fills them in."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from anytune import __version__
from anytune.errors import UsageError, shorten
from anytune.settings import today

NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
MAX_NAME = 40
LABEL = re.compile(r"[^\W_][\w .,&()'+/-]{0,79}")  # letters (any script), digits and plain punctuation
MAX_LABEL = 80

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
    """Write the package `anytune-NAME` into `directory` (default: ./anytune-NAME); refuse to overwrite.
    A write that fails half-way removes what it wrote: no half a package is left behind."""
    module = _check_name(name)
    label = _check_label(label) if label is not None else name.replace("-", " ").title()
    folder = Path(directory) if directory else Path.cwd() / f"anytune-{name}"
    _check_folder(folder)
    values = {
        "name": name,
        "module": module,
        "label": label,
        "Class": "".join(part.title() for part in name.split("-")),
        "ENV": name.replace("-", "_").upper(),
        "anytune_version": __version__,
        "today": today().isoformat(),
    }
    templates = resources.files("anytune").joinpath("plugin_template")
    made: list[Path] = []  # folders and files this call created, in order
    try:
        for target in [folder, folder / module, folder / "tests"]:
            if not target.is_dir():
                target.mkdir(parents=True)
                made.append(target)
        for template, target in FILES.items():
            path = folder / target.format(module=module)
            path.write_text(Template(templates.joinpath(template).read_text()).substitute(values))
            made.append(path)
        typed = folder / module / "py.typed"
        typed.write_text("")
        made.append(typed)
    except OSError as exc:
        for path in reversed(made):
            path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
        raise UsageError(
            f"cannot write the package to {_short(folder)}: {exc.strerror or exc}",
            hint="choose another --dir: a folder you may write to, or one to be made",
        ) from None
    return NewPlugin(folder, module, [x for x in made if x.is_file()])


def _check_name(name: str) -> str:
    """The package's module for `name`, refusing a name that is no name, too long for a folder, or one an
    installed plugin already has (its module would shadow the other's: `openai` wrote `anytune_openai`)."""
    if len(name) > MAX_NAME or not NAME.fullmatch(name):
        raise UsageError(
            f"{_short(name)!r} is not a plugin name anytune can use",
            hint=f"lowercase letters and digits, words joined by '-', at most {MAX_NAME} characters "
            "(e.g. acme or acme-cloud)",
        )
    module = "anytune_" + name.replace("-", "_")
    from anytune.plugins import get_plugin_manager

    taken = set(get_plugin_manager().backend_names())
    if name in taken or importlib.util.find_spec(module) is not None:
        raise UsageError(
            f"{name!r} is taken: an installed plugin already "
            + (f"serves the backend {name!r}" if name in taken else f"has the module {module}"),
            hint="choose another name (e.g. acme-" + name + ")",
        )
    return module


def _check_label(label: str) -> str:
    """The provider's name as people write it goes into Python, TOML, YAML and Markdown as it is: only
    characters that mean nothing in any of them (a quote or a backslash wrote files that did not parse)."""
    if not LABEL.fullmatch(label) or not label.strip():
        raise UsageError(
            f"--label {_short(label)!r}: a label may hold letters, digits, spaces and . , & ( ) ' + / - "
            f"(at most {MAX_LABEL} characters)",
            hint="write the provider's name plainly, e.g. --label 'Acme Cloud'",
        )
    return label.strip()


def _check_folder(folder: Path) -> None:
    try:
        dangling = folder.is_symlink() and not folder.exists()
        not_a_folder = folder.exists() and not folder.is_dir()
        full = not not_a_folder and folder.is_dir() and any(folder.iterdir())
    except OSError as exc:  # a name too long, a folder that may not be read
        raise UsageError(
            f"cannot use {_short(folder)}: {exc.strerror}", hint="choose another --dir"
        ) from None
    if dangling:
        raise UsageError(f"{_short(folder)} is a symbolic link to nothing", hint="choose another --dir")
    if not_a_folder:
        raise UsageError(f"{_short(folder)} exists and is not a folder", hint="choose another --dir")
    if full:
        raise UsageError(
            f"{_short(folder)} exists and is not empty", hint="choose another --dir, or remove it"
        )


def _short(value: object) -> str:
    return shorten(str(value), 120)
