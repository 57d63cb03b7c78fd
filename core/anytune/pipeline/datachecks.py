"""The generic data checks every job starts with, remembered while the files are unchanged: a comparison
across providers, or a run that prepares and then evaluates, reads each file's verdict once.

`DataChecks` holds the validation reports and split plans of one process (bounded: a server's lives for
months); `known()` and `adopt()` carry them to a second process quoting the same job."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anytune.data.clean_files import remember_clean
from anytune.data.split import LeakageKeys, LeakageReport, SplitPlan, leakage, plan_split, write_split
from anytune.data.validate import ValidationReport, require_valid, validate_file
from anytune.errors import AnytuneError
from anytune.hookspecs import Capabilities, DataBundle, DatasetRef
from anytune.pipeline.bounded import Bounded
from anytune.pipeline.capabilities import check_data_format
from anytune.registry import Registry
from anytune.settings import anytune_home
from anytune.spec import DataFormat, JobSpec

REMEMBERED = 32  # files per process
KEYS_REMEMBERED = 8  # files whose leakage keys are kept (a 200k-row file's are 4.8 MB)


def unchanged(path: str, *extra: Any) -> tuple[Any, ...] | None:
    """A key for work on `path` that holds while the file is unchanged (its size and modification time);
    None if the file cannot be looked at."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, *extra)


def several_splits(spec: JobSpec) -> bool:
    """Whether the job's files are checked against each other for shared prompts."""
    return bool(spec.data.validation or spec.data.test or spec.data.validation_split)


def data_format(spec: JobSpec) -> DataFormat | None:
    """The format the job names for its files; None where it is detected ("auto")."""
    return None if spec.data.format == "auto" else DataFormat(spec.data.format)


class DataChecks:
    """Validations and split plans of this process. Several providers are prepared at once on threads in a
    comparison: one validates a file, the others wait for its report instead of reading the file again."""

    def __init__(self) -> None:
        self._validated: Bounded[tuple[Any, ...], ValidationReport] = Bounded(REMEMBERED)
        self._plans: Bounded[tuple[Any, ...], SplitPlan] = Bounded(REMEMBERED)
        # the leakage keys of the files validated last (24 bytes a row), and the checks made from them
        self._keys: Bounded[tuple[Any, ...], LeakageKeys] = Bounded(KEYS_REMEMBERED)
        self._leaks: Bounded[tuple[Any, ...], LeakageReport] = Bounded(REMEMBERED)
        self._lock = threading.RLock()

    def validate(
        self, path: str, fmt: DataFormat | None, max_seq_length: int | None, *, keys: bool = False
    ) -> ValidationReport:
        """validate_file, remembered while the file is unchanged. `keys`: gather what a leakage check needs
        on the same pass (a job with more than one split), so that the check reads nothing again."""
        key = unchanged(path, fmt, max_seq_length)
        if key is None:  # validate_file says what is wrong with the path, in its words
            return validate_file(path, format=fmt, max_seq_length=max_seq_length)
        with self._lock:
            report: ValidationReport | None = self._validated.get(key)
            if report is None:
                gathered = LeakageKeys(fmt) if keys else None
                on_valid = gathered.add if gathered is not None else None
                report = validate_file(path, format=fmt, max_seq_length=max_seq_length, on_valid=on_valid)
                self._validated[key] = report
                if gathered is not None and report.errors == 0:
                    self._keys[key] = gathered
        return report

    def leakage(self, spec: JobSpec, train: DatasetRef, other: DatasetRef) -> LeakageReport:
        """Rows of `other` that share a prompt with `train`, from the keys their validation gathered (read
        again only where it gathered none: a report adopted from another process), remembered."""
        fmt, max_seq_length = data_format(spec), spec.hyperparameters.max_seq_length
        ends = (unchanged(train.path, fmt, max_seq_length), unchanged(other.path, fmt, max_seq_length))
        with self._lock:
            known = self._leaks.get(ends) if None not in ends else None
            if known is not None:
                return known
            train_keys = self._keys.get(ends[0]) if ends[0] else None
            other_keys = self._keys.get(ends[1]) if ends[1] else None
        train_keys = train_keys or LeakageKeys.of_file(train.path, train.format, what="the training data")
        other_keys = other_keys or LeakageKeys.of_file(other.path, other.format)
        report = leakage(train_keys, other_keys, train.path, other.path)
        if None not in ends:
            with self._lock:
                self._leaks[ends] = report
        return report

    def plan_split(
        self, path: str, fmt: DataFormat | None, max_seq_length: int | None, share: float, seed: int
    ) -> SplitPlan:
        """plan_split (validation rows dealt out of the training file by prompt), remembered likewise."""
        key = unchanged(path, fmt, max_seq_length, share, seed)
        with self._lock:
            plan: SplitPlan | None = self._plans.get(key) if key is not None else None
            if plan is None:
                ratios = {"train": 1 - share, "validation": share}
                plan = plan_split(path, ratios, seed=seed, format=fmt, max_seq_length=max_seq_length)
                if key is not None:
                    self._plans[key] = plan
        return plan

    def validate_spec(self, spec: JobSpec) -> None:
        """Validate the job's files now, once: what every provider's preflight checks first. Problems stay
        in the reports for the preflights to raise; a job whose validation rows are carved out of the
        training file is validated by its preflights."""
        if spec.data.validation_split:
            return
        fmt = data_format(spec)
        for path in (spec.data.train, spec.data.validation, spec.data.test):
            if path:
                try:
                    self.validate(path, fmt, spec.hyperparameters.max_seq_length, keys=several_splits(spec))
                except AnytuneError:  # the preflights say what is wrong, in their words
                    pass

    def known(self) -> list[dict[str, Any]]:
        """The files validated here, with their reports, as JSON: what another process quoting the same job
        adopts (`adopt`) instead of validating them again."""
        with self._lock:
            held = list(self._validated.items())
        return [  # the adopting side checks that each file is unchanged
            {
                "file": [path, size, mtime, fmt.value if fmt else None, max_seq_length],
                "report": report.model_dump(mode="json"),
            }
            for (path, size, mtime, fmt, max_seq_length), report in held
        ]

    def adopt(self, known: list[dict[str, Any]]) -> None:
        """Take `known()` from another process: a file still unchanged is not validated again, and a clean
        one is only parsed by the providers' passes. A file changed since is validated here."""
        for item in known:
            path, size, mtime, fmt, max_seq_length = item["file"]
            fmt = DataFormat(fmt) if fmt else None
            key = unchanged(path, fmt, max_seq_length)
            if key != (path, size, mtime, fmt, max_seq_length):
                continue
            report = ValidationReport.model_validate(item["report"])
            with self._lock:
                self._validated[key] = report
            if report.errors == 0 and report.format is not None:
                remember_clean(Path(path), report)


@dataclass
class CheckedData:
    """A job's files after the generic checks: the bundle a backend prepares, each split's report, and the
    warnings to show (long rows, duplicates, prompts shared between splits)."""

    bundle: DataBundle
    reports: dict[str, ValidationReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def check_data(
    checks: DataChecks, registry: Registry | None, spec: JobSpec, caps: Capabilities
) -> CheckedData:
    """Every split validated (every broken line named), its format checked against the method and the
    backend, its statistics and fingerprint recorded in `registry` (None: a quote records nothing)."""
    reports: dict[str, ValidationReport] = {}
    warnings: list[str] = []
    refs: dict[str, DatasetRef] = {}

    def split(name: str, path: str, origin: str | None = None) -> DatasetRef:
        return _check_split(checks, registry, spec, caps, (reports, warnings), name, path, origin)

    if spec.data.validation_split:
        # Carve validation out of train by prompt: one read validates the file and deals its rows, one more
        # writes the splits (none when this request was split before). The folder is named by content,
        # ratio and seed, so the same request reuses it and different data never collide.
        seed = spec.hyperparameters.seed if spec.hyperparameters.seed is not None else 42
        share = spec.data.validation_split
        plan = checks.plan_split(
            spec.data.train, data_format(spec), spec.hyperparameters.max_seq_length, share, seed
        )
        assert plan.report.fingerprint
        folder = f"{plan.report.fingerprint.removeprefix('sha256:')[:16]}-v{share:g}-s{seed}"
        written = write_split(plan, anytune_home() / "data" / "splits" / folder, cache=True)
        for name in ("train", "validation"):
            refs[name] = split(name, written.paths[name], spec.data.train)
    else:
        refs["train"] = split("train", spec.data.train)
        if spec.data.validation:
            refs["validation"] = split("validation", spec.data.validation)
    if spec.data.test:
        refs["test"] = split("test", spec.data.test)
    for other in ("validation", "test"):
        if other in refs:
            leak = checks.leakage(spec, refs["train"], refs[other])
            if leak.leaked:
                line, train_line = leak.examples[0]
                warnings.append(
                    f"{refs[other].path}: {leak.shared_prompts} of {leak.other_rows} {other} rows share a "
                    f"prompt with the training data (e.g. line {line} = train line {train_line})"
                )
    bundle = DataBundle(train=refs["train"], validation=refs.get("validation"), test=refs.get("test"))
    return CheckedData(bundle, reports, warnings)


def _check_split(
    checks: DataChecks,
    registry: Registry | None,
    spec: JobSpec,
    caps: Capabilities,
    found: tuple[dict[str, ValidationReport], list[str]],
    split_name: str,
    path: str,
    origin: str | None = None,
) -> DatasetRef:
    report = checks.validate(
        path, data_format(spec), spec.hyperparameters.max_seq_length, keys=several_splits(spec)
    )
    require_valid(report, what=f"the {split_name} data")
    assert report.format is not None and report.stats is not None and report.fingerprint
    if split_name != "test":
        check_data_format(spec.method_type, report.format, caps, spec.provider, origin or path)
    reports, warnings = found
    stats, shown = report.stats, origin or path
    if stats.rows_over_max:
        warnings.append(
            f"{shown}: {stats.rows_over_max} row(s) longer than max_seq_length "
            f"{spec.hyperparameters.max_seq_length} will be truncated"
            + ("" if origin else f" (e.g. line {stats.over_max_lines[0]})")
        )
    if stats.duplicates:
        warnings.append(
            f"{shown}: {stats.duplicates} duplicate row(s)"
            + ("" if origin else f" (e.g. line {stats.duplicate_lines[0][0]})")
        )
    reports[split_name] = report
    resolved = str(Path(path).resolve())
    if registry is not None:
        registry.record_dataset(
            fingerprint=report.fingerprint,
            format=report.format.value,
            rows=report.valid,
            path=resolved,
            tokens=stats.tokens_total,
            stats=stats.model_dump(mode="json"),
        )
    return DatasetRef(
        path=resolved,
        format=report.format,
        rows=report.valid,
        fingerprint=report.fingerprint,
        tokens=stats.tokens_total,
        tokens_estimated=stats.tokens_estimated,
        origin=str(Path(origin).resolve()) if origin else None,
    )
