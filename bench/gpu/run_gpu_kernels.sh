#!/usr/bin/env bash
# The kernel half of a GPU check, one command: build with make CUDA=1, run
# every [cuda] test (MS_REQUIRE_GPU=1: no silent skips), then the GPT-2-shaped
# kernel bench beside PyTorch (torch_peer.py) and the whole-step bench
# (step_bench.sh). scripts/gpu-check.sh runs the same under timeouts. (The
# kernels take their scratch from the caching allocator and their stream from
# the runtime, so they build only with the library: make CUDA=1.)
#
#   bench/gpu/run_gpu_kernels.sh [--quick]     (--quick: B = 2, fewer iterations)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=build-cuda
make CUDA=1 -j"$(nproc)" $B/unit_tests $B/minispeed $B/bench/bench_gpu_kernels
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
MS_REQUIRE_GPU=1 "$B/unit_tests" "[cuda]"
if python3 -c "import torch" 2>/dev/null; then
  python3 bench/gpu/torch_peer.py --ours "$B/bench/bench_gpu_kernels" --json "$B/bench_gpu.json" "$@"
else
  echo "run_gpu_kernels: no PyTorch here; our timings alone:"
  "$B/bench/bench_gpu_kernels" "$@"
fi
bench/gpu/step_bench.sh "$B" "$@"
