"""One job, every provider: quotes side by side, sorted by price, as a table, JSON, CSV or a plot.

    import anytune
    table = anytune.quote(anytune.load_job_file("job.yaml"), providers="all", hardware="all")
    print(table.cheapest().label, table.cheapest().price)

Each row is the provider's own `quote()` after the same checks `anytune run` makes (the preflight stage of
`anytune.pipeline`: capabilities, the provider's rules, the data), so a provider that cannot run the job
says why instead of giving a number. Nothing is recorded, uploaded or started. `Client.quote` (and so
`anytune.quote`) calls `quote_providers` in this process, or asks a server that does.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from anytune.api import Preflight
from anytune.cost.catalog import extra_prices, load_catalog
from anytune.cost.quotes import unavailable
from anytune.cost.table import QuoteTable
from anytune.errors import AnytuneError, DataError, UsageError
from anytune.hookspecs import Quote
from anytune.pipeline.context import Pipeline
from anytune.pipeline.preflight import preflight
from anytune.spec import JobSpec

LOCAL = "local"


@dataclass(frozen=True)
class Target:
    """One row to quote: a provider, and for hour-priced work the hardware."""

    provider: str
    hardware: str | None = None
    backend: str | None = None  # the backend that computes it, where it is not the provider's own


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def targets(
    installed: Iterable[str],
    providers: str | Sequence[str] = "all",
    hardware: str | Sequence[str] | None = None,
) -> list[Target]:
    """What to quote. Token-priced providers get one row; hour-priced ones one row per hardware: the
    machine's own for `local` by default, the cheapest that fits for a rental service, or every one
    (`hardware="all"`) or the ones named. A rental service with a backend (Hugging Face) chooses its machine
    in its own quote; one that has only catalog prices is quoted through the local backend: the same
    training, on its machines, at its prices."""
    catalog = load_catalog()
    installed = list(installed)
    wanted = _names(providers) or ["all"]
    if "all" in wanted:
        wanted = [
            *installed,
            *(p for p, info in catalog.providers.items() if not info.backend and p not in installed),
        ]
    hw = _names(hardware)
    out: list[Target] = []
    for name in wanted:
        info = catalog.providers.get(name)
        hourly = info is not None and info.billing == "hours"
        if name not in installed and not (info is not None and not info.backend):
            raise UsageError(
                f"no backend or catalog entry named {name!r}",
                hint=f"installed backends: {', '.join(installed) or 'none'}; "
                f"quote-only providers: {', '.join(p for p, i in catalog.providers.items() if not i.backend)}",
            )
        if not hourly:
            out.append(Target(name))
            continue
        backend = name if name in installed else LOCAL
        if hw is None:
            out.append(Target(name, None, backend))
        else:
            names = catalog.hardware_for(name) if "all" in hw else hw
            out.extend(Target(name, h, backend) for h in names)
    return out


def quote_providers(
    p: Pipeline,
    spec: JobSpec,
    providers: str | Sequence[str] = "all",
    *,
    hardware: str | Sequence[str] | None = None,
    prices: Iterable[str | Path] = (),
    processes: int | None = None,
) -> QuoteTable:
    """Quote `spec` on every provider named (or all), without recording, uploading or starting anything.

    `processes`: 2 quotes the local backend's rows in a second process (see `_apart`), 1 everything in this
    one; None (the default) chooses 2 for data of 16 MB or more on a machine with two cores or more."""
    from anytune.pipeline.datarefs import local_spec

    started = time.perf_counter()
    prices = [str(x) for x in prices]
    # uploaded datasets named by the files that hold them here, found in the caller's project (or not
    # found: a 404 for the whole quote, not a row's problem), before a second process that knows no project
    spec = local_spec(p, spec)
    with extra_prices(prices):
        quoter = _Quoter(p, spec)
        chosen = targets(p.plugins.backend_names(), providers, hardware)
        apart = _apart(p, spec, chosen, processes)
        second = None
        if apart:
            try:
                second = SecondProcess(spec, apart, prices)
            except OSError:  # no interpreter to start (an embedded Python): this process quotes them
                pass
        try:
            if second is not None:
                # the data checks every row starts with, made once: the second process adopts their reports
                # instead of repeating them (4 s of its 12 on 200k chats), and only parses the file
                p.data.validate_spec(spec)
                second.send_validations(p.data.known())
            mine = iter(quoter.rows([t for t in chosen if t not in apart]))
            theirs = second.result() if second is not None else None
        finally:
            if second is not None:
                second.stop()
        if theirs is None:  # no second process, or it failed: this one quotes its rows too
            theirs = (quoter.rows(apart), [])
        quoter.warnings.update(theirs[1])
        others = iter(theirs[0])
        ordered = [next(others) if t in apart else next(mine) for t in chosen]
    return QuoteTable(spec, ordered, time.perf_counter() - started, sorted(quoter.warnings))


APART_BYTES = 16 * 2**20  # below this a second process's start (about a second) costs more than it saves


def _apart(p: Pipeline, spec: JobSpec, chosen: list[Target], processes: int | None) -> list[Target]:
    """The rows a second process quotes: the local backend's (the local machine and the rental services
    priced through it). Its count is the one that holds the GIL (the model's own tokenizer, SmolLM2's, in
    Python) and the longest: in this process every other provider's work only takes turns with it, in a
    second one they overlap on the second core. Only with the installed plugins (the second process loads
    them from their entry points, not what was registered here) and for data worth a process's start."""
    mine = [t for t in chosen if (t.backend or t.provider) == LOCAL]
    if not mine or len(mine) == len(chosen) or os.environ.get(_CHILD_ENV):
        return []
    if processes is None:
        if (os.cpu_count() or 1) < 2:
            return []
        size = 0
        for path in (spec.data.train, spec.data.validation):
            try:
                size += os.stat(path).st_size if path else 0
            except OSError:
                return []  # the preflight says what is wrong with it
        if size < APART_BYTES:
            return []
    elif processes < 2:
        return []
    from anytune.plugins import get_plugin_manager

    return mine if p.plugins is get_plugin_manager() else []


_CHILD_ENV = "ANYTUNE_QUOTE_SECOND_PROCESS"


class SecondProcess:
    """`python -m anytune.workflows.quote_child`: a plain process (the caller's script is not run again, no
    fork of a process with threads) that reads the job, the rows and the price files as a JSON line on stdin,
    then a second line with the validation reports this process made (`send_validations`), and writes its
    quotes and warnings to a file. Any failure gives None: this process then quotes them."""

    def __init__(self, spec: JobSpec, rows: list[Target], prices: list[str]) -> None:
        import subprocess
        import sys
        import tempfile

        self._rows = len(rows)
        fd, out = tempfile.mkstemp(prefix="anytune-quote-", suffix=".json")
        os.close(fd)
        self._out = Path(out)
        request = {
            "spec": spec.model_dump(mode="json"),
            "rows": [asdict(t) for t in rows],
            "prices": prices,
            "out": out,
        }
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "anytune.workflows.quote_child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, _CHILD_ENV: "1"},
            )
        except OSError:
            self._out.unlink(missing_ok=True)
            raise
        self._send(request, close=False)

    def _send(self, message: Any, *, close: bool) -> None:
        import json

        stdin = self._proc.stdin
        assert stdin is not None
        try:
            if not stdin.closed:
                stdin.write(json.dumps(message).encode() + b"\n")
                stdin.flush()
                if close:
                    stdin.close()
        except OSError:  # it died: result() says None
            pass

    def send_validations(self, known: list[dict[str, Any]]) -> None:
        """The reports of the files validated here (`DataChecks.known`); the process waits for them
        before its first row, and validates alone what they do not cover."""
        self._send(known, close=True)

    def result(self) -> tuple[list[Quote], list[str]] | None:
        import json

        self._send([], close=True)  # nothing was sent (no validation here): it validates alone
        if self._proc.wait() != 0:
            return None
        try:
            answer = json.loads(self._out.read_text(encoding="utf-8"))
            quotes = [Quote.model_validate(q) for q in answer["quotes"]]
            warnings = [str(w) for w in answer["warnings"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (quotes, warnings) if len(quotes) == self._rows else None

    def stop(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._out.unlink(missing_ok=True)


class _Quoter:
    """Runs each backend's checks once (spec, capabilities, data), then asks it for every row it prices."""

    def __init__(self, p: Pipeline, spec: JobSpec) -> None:
        self.pipeline = p
        self.spec = spec
        self.warnings: set[str] = set()
        self._preflights: dict[str, Preflight | AnytuneError] = {}

    def _preflight(self, backend: str) -> Preflight | AnytuneError:
        if backend not in self._preflights:
            try:
                pre = preflight(
                    self.pipeline, self.spec.model_copy(update={"provider": backend}), quote_only=True
                )
                self.warnings.update(f"{backend}: {w}" for w in pre.warnings)
                self._preflights[backend] = pre
            except AnytuneError as exc:
                self._preflights[backend] = exc
        return self._preflights[backend]

    def prepare_all(self, backends: set[str]) -> None:
        """Every backend's checks and data preparation, all at once, each on its own thread: their passes
        over the same file then share one parse (`anytune.data.shared_read`), and their tokenizers count
        with the GIL released. 200k chats, OpenAI, Together, Fireworks and Hugging Face in one process:
        21-23 s two at a time with a parse each, 19 s all at once with one parse."""
        installed = set(self.pipeline.plugins.backend_names())
        todo = sorted(backends & installed)
        if len(todo) < 2 or (os.cpu_count() or 1) < 2:
            return
        with ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="anytune-quote") as pool:
            list(pool.map(self._preflight, todo))

    def rows(self, targets: list[Target]) -> list[Quote]:
        """Each target's row, in order, after every backend's checks and data preparation."""
        self.prepare_all({t.backend or t.provider for t in targets})
        return [self.row(t) for t in targets]

    def row(self, target: Target) -> Quote:
        if target.backend not in (None, target.provider) and target.hardware is None:
            return self.cheapest(target)  # a quote-only rental service, through local
        return self.one(target)

    def one(self, target: Target) -> Quote:
        backend = target.backend or target.provider
        model = self.spec.model_for(backend)
        if backend not in self.pipeline.plugins.backend_names():
            return unavailable(
                target.provider,
                f"needs the {backend} backend to count tokens (pip install 'anytune[{backend}]')",
                hardware=target.hardware,
            )
        pre = self._preflight(backend)
        try:
            if isinstance(pre, AnytuneError):
                raise pre
            if (target.provider == backend and target.hardware is None) or pre.prepared.errors:
                q = pre.quote
            else:
                q = pre.backend.quote(_spec_for(self.spec, target), pre.prepared)
        except AnytuneError as exc:
            reason = "; ".join(exc.details[:3]) if exc.details else exc.message
            refused = unavailable(target.provider, reason, model=model, hardware=target.hardware)
            if isinstance(exc, DataError):  # broken lines: refused by every provider, each line listed
                refused.problems = list(exc.details) or [exc.message]
            return refused
        return q if q.provider == target.provider else q.model_copy(update={"provider": target.provider})

    def cheapest(self, target: Target) -> Quote:
        """A rental service without a hardware choice: the cheapest of its machines that fits the job."""
        machines = load_catalog().hardware_for(target.provider)
        options = [self.one(Target(target.provider, h, target.backend)) for h in machines]
        priced = sorted(
            (q for q in options if q.available and q.price is not None), key=lambda q: q.price or 0.0
        )
        if priced:
            best = priced[0]
            best.assumptions.append(
                f"the cheapest of {len(options)} {target.provider} machines that fit; --hardware all lists every one"
            )
            return best
        reasons = sorted({q.reason for q in options if q.reason})
        return unavailable(
            target.provider,
            "; ".join(reasons[:2]) or "no machine fits",
            model=self.spec.model_for(target.provider),
        )


def _spec_for(spec: JobSpec, target: Target) -> JobSpec:
    backend = target.backend or target.provider
    update: dict[str, Any] = {"provider": backend}
    if target.hardware is not None or target.provider != backend:
        where = target.hardware or ""
        if target.provider != backend:
            where = f"{target.provider}:{where}"
        options = {**spec.provider_options}
        options[backend] = {**options.get(backend, {}), "hardware": where}
        update["provider_options"] = options
    return spec.model_copy(update=update)
