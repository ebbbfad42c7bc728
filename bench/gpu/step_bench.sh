#!/usr/bin/env bash
# The whole training step on the GPU, ours beside PyTorch eager, at issue 21's
# shapes: the tiny model (L4 H4 C256 T128 B16) and GPT-2 124M's body (L12 H12
# C768 T1024 B8, our byte vocabulary of 256), in fp32, TF32 and bf16. Ours is
# `minispeed train --device cuda` (its step line's ms, median after 2 warm-up
# steps); PyTorch's is bench/gpu/torch_gpt_step.py in the same run. One row each:
#   shape precision ours_ms torch_ms ours/torch (torch's variant)
# Ours has no TF32 switch in train (the device dispatch calls gemm_f32 with
# GemmConfig{}, FP32): its TF32 row says so instead of a number. The
# per-kernel times that explain the gap are bench_gpu_kernels' (torch_peer.py).
#
#   bench/gpu/step_bench.sh build-cuda [--quick]     (--quick: tiny shape only, fewer steps)
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build-cuda}
quick=${2:-}
steps=8
[ "$quick" = --quick ] && steps=5
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "SKIP: no GPU visible (nvidia-smi -L failed); nothing to time"
  exit 0
fi
have_torch=0
python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null && have_torch=1

# ours_ms FLAGS...: median step time of `minispeed train --device cuda`.
ours_ms() {
  OMP_NUM_THREADS=8 "$B/minispeed" train --device cuda --steps "$steps" --eval-every 0 \
    --sample-tokens 0 --log-every 1 --lr 1e-3 "$@" 2>&1 |
    grep -oE '\| +[0-9.]+ ms \|' | awk '{print $2}' | tail -n +3 | sort -g |
    awk '{a[NR] = $1} END { if (NR == 0) print "FAILED"; else print a[int((NR + 1) / 2)] }'
}
torch_ms() {
  [ $have_torch = 1 ] || { echo "n/a"; return; }
  python3 bench/gpu/torch_gpt_step.py --steps "$steps" --warmup 2 "$@" 2>&1 |
    grep -oE 'TORCH_GPU_STEP .* ms=[0-9.]+' | grep -oE 'ms=[0-9.]+' | cut -d= -f2 || echo "FAILED"
}
row() {  # row SHAPE PRECISION OURS TORCH TORCH_VARIANT
  local ratio=-
  [[ $3 =~ ^[0-9.]+$ && $4 =~ ^[0-9.]+$ ]] && ratio=$(awk -v a="$3" -v b="$4" 'BEGIN { printf "%.2f", a / b }')
  printf '%-10s %-5s %10s %10s %8s  %s\n' "$1" "$2" "$3" "$4" "$ratio" "$5"
}

echo "# $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); $steps steps, median after 2"
printf '%-10s %-5s %10s %10s %8s  %s\n' shape prec ours_ms torch_ms ours/torch "torch variant"
shapes=("tiny:4:4:256:128:16")
[ "$quick" = --quick ] || shapes+=("gpt2-124M:12:12:768:1024:8")
for s in "${shapes[@]}"; do
  IFS=: read -r name L H C T Bt <<<"$s"
  ours_shape=(--n-layer "$L" --n-head "$H" --n-embd "$C" --seq-len "$T" --batch-size "$Bt")
  torch_shape=(--n-layer "$L" --n-head "$H" --n-embd "$C" --seq "$T" --batch "$Bt")
  row "$name" fp32 "$(ours_ms "${ours_shape[@]}")" "$(torch_ms "${torch_shape[@]}" --precision fp32)" "eager, mask+softmax"
  row "$name" tf32 "n/a" "$(torch_ms "${torch_shape[@]}" --precision tf32 --sdpa)" "eager + SDPA (ours: no TF32 switch in train)"
  row "$name" bf16 "$(ours_ms "${ours_shape[@]}" --bf16)" "$(torch_ms "${torch_shape[@]}" --precision bf16 --sdpa)" "autocast bf16 + SDPA"
done
