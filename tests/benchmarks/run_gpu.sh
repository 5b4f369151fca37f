#!/usr/bin/env bash
# The whole benchmark suite on a GPU, in one go: prints the ratio table and writes it as JSON to $1
# (default bench-gpu.json). Installs nothing from the network (sharpbench itself without dependencies).
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -m pytest tests/benchmarks --benchmark-only --bench-device cuda -p no:cacheprovider \
    --bench-json "${1:-bench-gpu.json}"
