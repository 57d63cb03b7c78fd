"""The machines Hugging Face rents (Jobs flavors), read from the pricing catalog, and the choice of one for a
job: the flavor whose training costs least among those whose memory fits it.

Each flavor is a catalog price of provider `hf` whose `hardware` names anytune's hardware table (GPU model,
count, memory, TFLOPS) and whose `flavor` is Hugging Face's name for the machine; the memory each needs is
anytune's memory model (`anytune.plugin.training_memory`), the hours its throughput model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from anytune.plugin import JobSpec, Quote, load_catalog, training_memory, unavailable

PROVIDER = "hf"


@dataclass(frozen=True)
class Flavor:
    name: str  # Hugging Face's name: a10g-large, h200x2...
    hardware: str  # anytune's hardware table: a10g, h200x2...
    gpus: int
    memory_gb: float | None
    price: float  # per hour


def flavors() -> list[Flavor]:
    """Every flavor with an hourly price, cheapest first."""
    catalog = load_catalog()
    found: dict[str, Flavor] = {}
    for hardware in catalog.hardware_for(PROVIDER):
        entry = catalog.price(PROVIDER, hardware=hardware)
        hw = catalog.hardware.get(hardware)
        if entry is None or hw is None:
            continue
        found[hardware] = Flavor(
            name=entry.flavor or hardware,
            hardware=hardware,
            gpus=hw.gpus if hw.kind == "gpu" else 0,
            memory_gb=hw.memory_gb,
            price=entry.price,
        )
    return sorted(found.values(), key=lambda f: f.price)


def flavor_named(name: str) -> Flavor | None:
    """A flavor by Hugging Face's name (`a10g-large`) or anytune's hardware name (`a10g`)."""
    return next((f for f in flavors() if name in (f.name, f.hardware)), None)


def memory_note(spec: JobSpec, params_b: float, flavor: Flavor) -> str:
    hp = spec.hyperparameters
    estimate = training_memory(
        params_b,
        spec.adapter.type,
        batch=hp.batch_size,
        seq_len=hp.max_seq_length,
        lora_r=int(getattr(spec.adapter, "r", 16) or 16),
        gpus=max(1, flavor.gpus),
    )
    have = f"{flavor.memory_gb:g} GB" + (" per GPU" if flavor.gpus else "")
    return f"memory: {estimate.describe()}; {flavor.name} has {have}"


CPU_MAX_PARAMS_B = 1.0


def cpu_trains(spec: JobSpec, params_b: float | None) -> bool:
    """Whether a CPU flavor is worth offering: small models only (the CPU rate is measured on a 135M model
    and a larger one is impractically slow there), and not QLoRA (bitsandbytes' 4-bit kernels are CUDA's)."""
    return params_b is not None and params_b <= CPU_MAX_PARAMS_B and spec.adapter.type != "qlora"


def choose(
    spec: JobSpec,
    model: str,
    params_b: float | None,
    price_on: Callable[[Flavor], Quote],
    max_gpus: int | None = None,
) -> Quote:
    """The quote on the flavor that costs least for this job among those it fits, with why; or a refusal
    that gives the memory figures of the largest machine it was allowed."""
    allowed = [
        f
        for f in flavors()
        if (max_gpus is None or f.gpus <= max_gpus) and (f.gpus or cpu_trains(spec, params_b))
    ]
    quotes = [(f, price_on(f)) for f in allowed]
    fitting = sorted(
        ((f, q) for f, q in quotes if q.available and q.price is not None), key=lambda fq: fq[1].price or 0.0
    )
    if not fitting:
        largest = max(allowed, key=lambda f: (f.gpus * (f.memory_gb or 0), f.price), default=None)
        reason = next((q.reason for f, q in quotes if f is largest and q.reason), None)
        limit = f" (provider_options.hf.max_gpus: {max_gpus})" if max_gpus is not None else ""
        return unavailable(
            PROVIDER,
            f"fits no flavor{limit}: on the largest, {reason or 'no flavor is priced'}",
            model=model,
        )
    flavor, best = fitting[0]
    notes = [f"flavor {flavor.name} (${flavor.price:g}/h, billed per minute)"]
    if params_b is not None:
        notes.append(memory_note(spec, params_b, flavor))
    too_small = [f.name for f, q in quotes if not q.available]
    notes.append(
        f"the cheapest of {len(fitting)} flavors that fit"
        + (f" (next: {fitting[1][0].name} at {fitting[1][1].price:.2f})" if len(fitting) > 1 else "")
        + (f"; too small: {', '.join(too_small)}" if too_small else "")
        + "; set provider_options.hf.flavor to choose"
    )
    return best.model_copy(update={"assumptions": [*notes, *best.assumptions]})
