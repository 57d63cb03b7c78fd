"""How much accelerator memory training takes: the figure that decides which machine a job can rent.

The model, per GPU, in bytes:
- weights of the base at the training precision: 2 per parameter (bf16), 0.55 with QLoRA (4-bit NF4 plus
  its quantization constants);
- what training adds per *trained* parameter: full fine-tuning in mixed precision keeps a bf16 gradient, an
  fp32 master copy and two fp32 Adam moments (2 + 4 + 8 = 14 bytes on top of the weight); an adapter is
  trained in fp32 (weight 4, gradient 4, Adam 8 = 16 bytes). An adapter's size is that of LoRA on every
  linear layer (about 21.5 x r x hidden size per layer), which bounds the smaller kinds (prefix, IA3);
- activations with gradient checkpointing: one bf16 hidden state per layer boundary, one layer's working set
  recomputed (about 34 values per hidden unit), and the fp32 logits over the vocabulary for the loss, all
  times batch x sequence length;
- the CUDA context and allocator slack: 1.5 GB plus 10%.
Several GPUs of one machine shard weights, gradients and optimizer states (FSDP / ZeRO-3); each GPU keeps
its own activations.

Layer count and hidden size come from the parameter count (the shapes of Llama / Qwen / SmolLM families), so
a model needs only its size. It is an estimate for choosing hardware, not a promise: the run is the judge.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9
WEIGHT_BYTES = {"full": 2.0, "peft": 2.0, "qlora": 0.55}
TRAINED_BYTES = {"full": 14.0, "peft": 16.0, "qlora": 16.0}
LORA_PER_LAYER = 21.5  # x r x hidden: q, k, v, o (4 x 2h) and gate, up, down (3 x 4.5h) per unit of rank
LAYER_WORKING_SET = 34.0  # values per hidden unit one transformer layer holds while recomputed
CONTEXT_GB = 1.5
SLACK = 1.1
DEFAULT_VOCAB = 128_256  # Llama 3's; a smaller vocabulary only lowers the estimate
DEFAULT_BATCH = 1
DEFAULT_SEQ = 2048

# (largest size in billions, layers, hidden size): typical shapes by size
SHAPES = (
    (0.2, 30, 576),
    (0.6, 24, 1024),
    (1.5, 28, 1536),
    (4.0, 28, 3072),
    (9.0, 32, 4096),
    (15.0, 40, 5120),
    (40.0, 64, 5120),
    (80.0, 80, 8192),
    (float("inf"), 126, 16384),
)


def family(adapter: str) -> str:
    if adapter == "full":
        return "full"
    return "qlora" if adapter == "qlora" else "peft"


def shape(params_b: float) -> tuple[int, int]:
    """(layers, hidden size) typical of a model of `params_b` billion parameters."""
    for limit, layers, hidden in SHAPES:
        if params_b <= limit:
            return layers, hidden
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class MemoryEstimate:
    """Training memory per GPU, in GB, part by part, on `gpus` GPUs of one machine."""

    params_b: float
    adapter: str
    gpus: int
    batch: int
    seq_len: int
    parts: dict[str, float]

    @property
    def per_gpu_gb(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        shown = " + ".join(f"{name} {gb:,.1f}" for name, gb in self.parts.items())
        where = f" per GPU over {self.gpus} GPUs (sharded)" if self.gpus > 1 else ""
        return (
            f"{self.params_b:g}B {self.adapter}, batch {self.batch} x {self.seq_len} tokens: "
            f"{shown} = {self.per_gpu_gb:,.1f} GB{where}"
        )


def training_memory(
    params_b: float,
    adapter: str,
    *,
    batch: int | None = None,
    seq_len: int | None = None,
    lora_r: int = 16,
    gpus: int = 1,
    vocab: int = DEFAULT_VOCAB,
) -> MemoryEstimate:
    """The memory one GPU needs to train `params_b` billion parameters with `adapter` (see the module)."""
    kind = family(adapter)
    batch, seq_len = batch or DEFAULT_BATCH, seq_len or DEFAULT_SEQ
    layers, hidden = shape(params_b)
    params = params_b * 1e9
    trained = params if kind == "full" else LORA_PER_LAYER * lora_r * hidden * layers
    tokens = batch * seq_len
    activations = tokens * hidden * (2 * layers + LAYER_WORKING_SET) * 2 + tokens * vocab * 4
    shard = max(1, gpus)
    weights = params * WEIGHT_BYTES[kind] / shard / GB
    training = trained * TRAINED_BYTES[kind] / shard / GB
    working = activations / GB
    overhead = CONTEXT_GB + (weights + training + working) * (SLACK - 1)
    return MemoryEstimate(
        params_b=params_b,
        adapter=adapter,
        gpus=shard,
        batch=batch,
        seq_len=seq_len,
        parts={
            "weights": round(weights, 2),
            "gradients+optimizer": round(training, 2),
            "activations": round(working, 2),
            "overhead": round(overhead, 2),
        },
    )
