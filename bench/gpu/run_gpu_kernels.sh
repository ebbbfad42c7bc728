#!/usr/bin/env bash
# The kernel half of a GPU check, one command: build (build_kernels.sh), run
# every [cuda] kernel test against its CPU twin, then the GPT-2-shaped bench
# beside PyTorch (torch_peer.py). Exits non-zero if the build or a test fails;
# the bench runs only after the tests pass. Without a GPU the tests skip
# visibly, then the bench says there is nothing to time and exits 2.
#
#   bench/gpu/run_gpu_kernels.sh [--quick]     (--quick: B = 2, fewer iterations)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=build/cuda-kernels
bench/gpu/build_kernels.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$OUT/cuda_kernel_tests" "[cuda]"
if python3 -c "import torch" 2>/dev/null; then
  python3 bench/gpu/torch_peer.py --ours "$OUT/bench_gpu_kernels" --json "$OUT/bench_gpu.json" "$@"
else
  echo "run_gpu_kernels: no PyTorch here; our timings alone:"
  "$OUT/bench_gpu_kernels" "$@"
fi
