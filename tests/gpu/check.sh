#!/usr/bin/env bash
# GPU check (not part of the default test run): QLoRA nf4 in bf16, LoRA with length-grouped batches, and DPO on a
# 0.5B-parameter Llama built from a config (random weights: throughput and memory do not depend on them), through
# anytune's own local training code. Prints tokens/s and peak GPU memory for each. Under 8 minutes on one
# H100/H200-class GPU. Needs torch (CUDA), transformers, peft, trl, bitsandbytes, datasets, tokenizers, accelerate.
#   bash tests/gpu/check.sh            (from the repository root; the source tree is enough, no install)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD/core:$PWD/plugins${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export ANYTUNE_HOME="${ANYTUNE_HOME:-$(mktemp -d)}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 450 python3 tests/gpu/check.py "$@"
