"""The shape of the code, checked: core imports no plugin, plugins import only the public surface (and the
listed plugin-to-plugin pairs), the core's layers point one way, no import loops, the CLI, workflows and
service reach jobs, models and evaluations only through the Client, and the plugins carry their providers
(emulators, prices)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"
PLUGINS = ROOT / "plugins"
PLUGIN_PACKAGES = sorted(p.name for p in PLUGINS.iterdir() if (p / "__init__.py").exists())
# What a plugin may import of anytune: the public surface, and the emulator kit.
PUBLIC = ("anytune.plugin", "anytune.testing")
# One plugin may use another only where listed: Hugging Face Jobs runs the local trainer on rented hardware
# (its runner starts the local worker; its quote counts as the local backend does).
PLUGIN_PAIRS = {("anytune_hf", "anytune_local")}

# The core's layers, bottom first: a module imports only from its own layer and the ones below it. A module
# belongs to the layer of the longest prefix that names it (`anytune` names only the package itself); every
# module must belong to one.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "anytune.errors",
            "anytune.asgi",
            "anytune.settings",
            "anytune.paths",
            "anytune.locks",
            "anytune.secrets",
            "anytune.formatting",
            "anytune.spec",
            "anytune.spec_upgrades",
            "anytune.jobs",
            "anytune.jobfile",
            # what a job spec holds of a grader: its fields, templates and formula (pydantic and the stdlib)
            "anytune.graders.spec",
            "anytune.graders.formula",
            "anytune.graders.templates",
            "anytune.graders.runtime",
        ),
    ),
    ("contract", ("anytune.hookspecs",)),
    ("storage", ("anytune.storage",)),
    ("data engine", ("anytune.data",)),
    ("cost engine", ("anytune.cost",)),
    ("evaluation engine", ("anytune.evaluation", "anytune.graders")),
    ("registry", ("anytune.registry",)),
    (
        "plugin surface",
        (
            "anytune.remote",
            "anytune.kit",
            "anytune.jobdir",
            "anytune.plugin",
            "anytune.plugins",
            "anytune.testing",
        ),
    ),
    ("client interface", ("anytune.api",)),
    ("pipeline", ("anytune.pipeline",)),
    ("workflows", ("anytune.workflows",)),
    ("client", ("anytune.client",)),
    (
        "applications",
        (
            "anytune",
            "anytune.__main__",
            "anytune.cli",
            "anytune.service",
            "anytune.scaffold",
            "anytune.testing.conformance",
            "anytune.testing.harness",
        ),
    ),
]
# Registry internals: SQL and sessions. The CLI, workflows and service use the Client's interface for jobs,
# models and evaluations, and the registry's public modules (access, leases, outbox) for the service's own
# records.
DRIVERS = ("anytune.cli", "anytune.workflows", "anytune.service")
REGISTRY_INTERNALS = (
    "anytune.registry.store",
    "anytune.registry.tables",
    "anytune.registry.db",
    "anytune.registry.migrations",
)


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> list[str]:
    """Every module `path` imports, at the top, inside functions and under TYPE_CHECKING alike."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def graph() -> dict[str, set[str]]:
    known = {**modules(CORE), **modules(PLUGINS)}
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for target in imports(path):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_every_core_module_imports_with_the_plugins_unimportable():
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, pkgutil, sys
        BLOCKED = {tuple(PLUGIN_PACKAGES)!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is made unimportable for this test")
                return None

        sys.meta_path.insert(0, Block())
        import anytune
        failed = []
        count = 0
        for info in pkgutil.walk_packages(anytune.__path__, "anytune."):
            if info.name == "anytune.__main__":  # runs the CLI
                continue
            count += 1
            try:
                importlib.import_module(info.name)
            except Exception as exc:
                failed.append(f"{{info.name}}: {{type(exc).__name__}}: {{exc}}")
        from anytune.plugins import get_plugin_manager
        broken = [p.name for p in get_plugin_manager().plugins() if not p.ok]
        print(count, "modules;", "broken plugins:", broken)
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    count = int(done.stdout.split()[0])
    assert count > 50  # the walk did reach the whole package
    for name in PLUGIN_PACKAGES:  # the plugins were really gone: each is listed as broken, not fatal
        assert name.removeprefix("anytune_") in done.stdout


def test_core_never_imports_a_plugin():
    offenders = [
        f"{name} imports {target}"
        for name, path in modules(CORE).items()
        for target in imports(path)
        if target.split(".")[0] in PLUGIN_PACKAGES
    ]
    assert offenders == []


@pytest.mark.parametrize("package", PLUGIN_PACKAGES)
def test_a_plugin_imports_only_the_public_plugin_surface(package):
    offenders = [
        f"{name} imports {target}"
        for name, path in modules(PLUGINS).items()
        if name.split(".")[0] == package
        for target in imports(path)
        if target.split(".")[0] == "anytune" and not target.startswith(PUBLIC)
    ]
    assert offenders == []


def test_the_third_party_plugin_and_the_scaffold_use_only_the_public_surface(tmp_path):
    """examples/anytune-fireworks (package and tests) and what `anytune plugins new` writes are held to what
    a plugin outside anytune may import: its own modules, `anytune.plugin` and `anytune.testing`."""
    from anytune.scaffold import new_plugin

    fireworks = ROOT / "examples" / "anytune-fireworks"
    written = new_plugin("acme", tmp_path / "acme").folder
    paths = [*fireworks.rglob("*.py"), *written.rglob("*.py")]
    import anytune

    top = {f"anytune.{name}" for name in anytune.__all__}  # what a user's script imports (tests may)
    offenders = [
        f"{path} imports {target}"
        for path in paths
        for target in imports(path)
        if target.split(".")[0] in ("anytune", *PLUGIN_PACKAGES)
        and not target.startswith(PUBLIC)
        and not ("tests" in path.parts and target in top)
    ]
    assert len(paths) > 10 and offenders == []


def layer_of(module: str) -> int:
    best, found = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (prefix != "anytune" and module.startswith(prefix + "."))
            if inside and len(prefix) > best:
                best, found = len(prefix), index
    assert found is not None, f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py"
    return found


def test_the_cores_layers_point_one_way():
    edges = graph()
    core = [name for name in edges if name == "anytune" or name.startswith("anytune.")]
    upward = [
        f"{name} ({LAYERS[layer_of(name)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})"
        for name in core
        for target in edges[name]
        if target.startswith("anytune")
        and not target.startswith("anytune_")
        and layer_of(target) > layer_of(name)
    ]
    assert upward == []
    assert len(core) > 80  # the walk reached the whole core


def test_the_layers_name_real_modules():
    known = set(modules(CORE))
    for _, prefixes in LAYERS:
        for prefix in prefixes:
            assert any(m == prefix or m.startswith(prefix + ".") for m in known), prefix


def test_plugins_import_other_plugins_only_where_listed():
    found = {
        (name.split(".")[0], target.split(".")[0])
        for name, path in modules(PLUGINS).items()
        for target in imports(path)
        if target.split(".")[0] in PLUGIN_PACKAGES and target.split(".")[0] != name.split(".")[0]
    }
    assert found == PLUGIN_PAIRS  # a pair no longer used comes off the list too


def _registry_reach(path: Path) -> list[str]:
    """Where a module reaches into the registry: an import of its internals, a call through a `.registry`
    attribute (`client.registry.get_job`), a session or the engine."""
    found = [f"imports {t}" for t in imports(path) if t.startswith(REGISTRY_INTERNALS)]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            inner = node.value
            if isinstance(inner, ast.Attribute) and inner.attr == "registry":
                found.append(f"line {node.lineno}: .registry.{node.attr}")
            if node.attr in ("session", "engine"):
                found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_the_cli_workflows_and_service_go_through_the_client_not_the_registry():
    drivers = {
        name: path
        for name, path in modules(CORE).items()
        if any(name == d or name.startswith(d + ".") for d in DRIVERS)
    }
    offenders = {name: reach for name, path in drivers.items() if (reach := _registry_reach(path))}
    assert offenders == {}
    assert len(drivers) > 20


def test_the_check_finds_a_reach_into_the_registry(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from anytune.registry.tables import JobRow\n\ndef f(c):\n    return c.registry.get_job('x')\n"
    )
    assert len(_registry_reach(bad)) == 2


def test_there_are_no_import_loops():
    assert cycles(graph()) == []


def test_emulate_lists_the_emulators_the_plugins_offer():
    done = subprocess.run(
        [sys.executable, "-m", "anytune", "emulate"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines() if line and not line.startswith("anytune")]
    assert {"openai", "together"} <= set(names)
    from anytune.plugins import get_plugin_manager

    offered = get_plugin_manager().emulators()
    assert offered["openai"].build.__module__ == "anytune_openai.plugin"
    assert offered["together"].build.__module__ == "anytune_together.plugin"


def test_a_providers_prices_and_dates_come_from_its_plugin():
    from anytune.cost.catalog import load_catalog

    builtin = (CORE / "anytune" / "cost" / "prices.yaml").read_text()
    assert "2027-01-06" not in builtin and "provider: openai" not in builtin
    catalog = load_catalog()
    assert str(catalog.providers["openai"].new_jobs_end) == "2027-01-06"
    assert catalog.price("together", method="sft", adapter="lora", params_b=8.0) is not None


def test_modules_and_functions_of_the_core_stay_small():
    """No module of the core over 600 lines and no function over 80 (the Alembic migrations are written
    once, as their tool lays them out): a reader sees a module's job, and a function's steps, at once."""
    long_modules, long_functions = [], []
    for path in (CORE / "anytune").rglob("*.py"):
        if "migrations" in path.parts:
            continue
        text = path.read_text()
        if text.count("\n") > 600:
            long_modules.append(f"{path.relative_to(CORE)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > 80:
                    long_functions.append(f"{path.relative_to(CORE)}:{node.lineno} {node.name}: {size} lines")
    assert long_modules == [] and long_functions == []
    front = (CORE / "anytune" / "client" / "inprocess.py").read_text().count("\n")
    assert front < 250, f"the in-process Client, a thin front over the pipeline, has {front} lines"
