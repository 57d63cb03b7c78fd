"""Does a backend fit a spec? Every mismatch, said plainly, before anything runs or is paid for (the first
check of the preflight stage)."""

from __future__ import annotations

from anytune.data.formats import PREFERENCE_FORMATS, SUPERVISED_FORMATS, DataFormat
from anytune.errors import CapabilityError, CredentialsError
from anytune.hookspecs import CREDENTIALS, Capabilities, Problem
from anytune.spec import JobSpec, Method

# Which data formats each method can learn from (after anytune's own conversions).
METHOD_FORMATS: dict[Method, frozenset[DataFormat]] = {
    Method.SFT: SUPERVISED_FORMATS,
    Method.DPO: PREFERENCE_FORMATS,
    Method.REWARD: PREFERENCE_FORMATS,
    Method.CPT: frozenset({DataFormat.TEXT}) | SUPERVISED_FORMATS,
    Method.PPO: SUPERVISED_FORMATS,
    Method.GRPO: SUPERVISED_FORMATS,
    # prompts with their answers for now: the answer is the grader's `item.reference` (docs/graders.md)
    Method.RFT: SUPERVISED_FORMATS,
}


def check_spec(spec: JobSpec, caps: Capabilities, provider: str) -> list[Problem]:
    """Every way in which `spec` asks for something that `caps` cannot do."""
    problems: list[Problem] = []

    def error(field: str, message: str) -> None:
        problems.append(Problem("error", field, message))

    method = spec.method_type
    if method not in caps.methods:
        can = ", ".join(sorted(m.value for m in caps.methods))
        error("method", f"{provider} cannot run method {method.value!r}; it can run: {can}")

    adapter = spec.adapter_type
    if adapter not in caps.adapters:
        can = ", ".join(sorted(a.value for a in caps.adapters))
        error("adapter", f"{provider} cannot train adapter {adapter.value!r}; it can train: {can}")

    models = caps.base_models
    base = spec.model_for(provider)
    if models is not None and base not in models and base not in models.values():
        known = ", ".join(sorted(models)) or "none"
        error(
            "base_model",
            f"{provider} cannot fine-tune {base!r}; it can fine-tune: {known} "
            f"(name another with provider_options.{provider}.base_model)",
        )

    if spec.data.format != "auto":
        fmt = DataFormat(spec.data.format)
        if fmt not in METHOD_FORMATS[method]:
            need = ", ".join(sorted(f.value for f in METHOD_FORMATS[method]))
            error("data.format", f"method {method.value!r} needs data in one of: {need}; got {fmt.value!r}")

    ignored = sorted(spec.hyperparameters.explicitly_set() - caps.hyperparameters)
    for name in ignored:
        problems.append(
            Problem(
                "error" if spec.strict else "warning",
                f"hyperparameters.{name}",
                f"{provider} does not honour this setting; it would be ignored",
            )
        )

    limit = caps.limits.max_seq_length
    msl = spec.hyperparameters.max_seq_length
    if limit is not None and msl is not None and msl > limit:
        error("hyperparameters.max_seq_length", f"{provider} allows at most {limit} tokens per example")
    return problems


def check_data_format(method: Method, fmt: DataFormat, caps: Capabilities, provider: str, path: str) -> None:
    """Refuse data whose (detected) format the method or backend cannot use."""
    if fmt not in METHOD_FORMATS[method]:
        need = ", ".join(sorted(f.value for f in METHOD_FORMATS[method]))
        raise CapabilityError(
            f"{path}: the data is in {fmt.value!r} format, but method {method.value!r} needs one of: {need}",
            hint="convert it with `anytune data convert`, or pick the method that fits the data",
        )
    if fmt not in caps.data_formats:
        can = ", ".join(sorted(f.value for f in caps.data_formats))
        raise CapabilityError(f"{path}: {provider} cannot take {fmt.value!r} data; it takes: {can}")


def raise_for_problems(problems: list[Problem], provider: str) -> list[Problem]:
    """Raise a CapabilityError listing every error (a CredentialsError when only the key is wrong);
    return the warnings."""
    errors = [p for p in problems if p.severity == "error"]
    if errors and all(p.field == CREDENTIALS for p in errors):
        raise CredentialsError(
            f"{provider}: {'; '.join(p.message for p in errors)}",
            hint="keys are read from the environment only (anytune never stores them); check the variable named",
        )
    if errors:
        raise CapabilityError(
            f"the job cannot run on {provider!r} as written ({len(errors)} problem{'s' if len(errors) != 1 else ''})",
            details=[str(p) for p in errors],
            hint="change the spec, or choose another provider with --provider",
        )
    return [p for p in problems if p.severity == "warning"]
