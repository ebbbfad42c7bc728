#!/usr/bin/env bash
# The device path end to end on the simulated device (issue 20): `minispeed
# train --device sim` runs every op, the optimizer, the collectives (staged
# through the host by the MPI backend), ZeRO's buffers and the checkpointed
# weights through the same calls a GPU takes, on host memory that host code may
# not touch. Each run must equal its CPU twin bit for bit: every printed loss,
# validation loss and gradient norm, and the saved weights' bytes. Cases: 1
# rank, dp 2 with ZeRO 0-3, tp 2, pp 2, bf16, fp16 (a start scale that
# overflows: skipped steps), ZeRO-Offload (and offload
# against no offload on the CPU, and on the device with bf16), and a
# checkpoint saved and resumed on the device. Then the bad
# inputs: --device cuda in a build without CUDA (or without a GPU) is an
# error on every rank, and an unknown device names the valid ones.
#   scripts/test-device.sh BUILD_DIR
set -uo pipefail
bin=$1/minispeed
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mpirun=${MPIRUN:-mpirun --oversubscribe}
common="--n-layer 2 --n-head 4 --n-embd 32 --seq-len 16 --batch-size 2 --steps 3 --lr 3e-3
        --eval-every 3 --eval-batches 1 --log-every 1 --sample-tokens 8 --grad-clip 0.5"
numbers() { grep -oE '(loss|val|norm) [0-9.]+' "$1"; }
pass=0 fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAILED: $1"; fail=$((fail + 1)); }

# run NAME NP FLAGS...: one training run, output and weights under $tmp/NAME.
run() {
  local name=$1 np=$2
  shift 2
  local launch=()
  [ "$np" -gt 1 ] && launch=($mpirun -np "$np")
  OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=30 "${launch[@]}" "$bin" train $common "$@" \
    --save-weights "$tmp/$name.safetensors" >"$tmp/$name.log" 2>&1 </dev/null
}
# same A B LABEL: runs A and B printed the same numbers and saved the same bytes.
same() {
  if [ -s "$tmp/$1.safetensors" ] && [ -s "$tmp/$2.safetensors" ] &&
    [ -n "$(numbers "$tmp/$1.log")" ] &&
    diff <(numbers "$tmp/$1.log") <(numbers "$tmp/$2.log") >/dev/null &&
    cmp -s "$tmp/$1.safetensors" "$tmp/$2.safetensors"; then
    ok "$3"
  else
    bad "$3"
    diff <(numbers "$tmp/$1.log") <(numbers "$tmp/$2.log") | head -6 | sed 's/^/  /'
    grep -h "error" "$tmp/$1.log" "$tmp/$2.log" | head -3 | sed 's/^/  /'
  fi
}

while read -r name np flags; do
  run "$name-cpu" "$np" $flags
  run "$name-sim" "$np" $flags --device sim
  same "$name-cpu" "$name-sim" "--device sim equals the CPU: $np rank(s) $flags"
done <<'CASES'
one 1
z0 2 --zero-stage 0
z1 2 --zero-stage 1
z2 2 --zero-stage 2
z3 2 --zero-stage 3
tp 2 --tp 2
pp 2 --pp 2 --grad-accum 2
bf16 2 --bf16 --zero-stage 1
bf16one 1 --bf16
fp16 2 --fp16 --initial-scale-power 18 --hysteresis 1 --zero-stage 1
offload 2 --zero-stage 2 --offload-optimizer
offbf16 1 --bf16 --offload-optimizer
CASES
# The fp16 case must have skipped a step (the device's overflow test fired).
if grep -q "OVERFLOW" "$tmp/fp16-sim.log"; then
  ok "--device sim --fp16 skipped an overflowing step, as the CPU run did"
else
  bad "--device sim --fp16: no OVERFLOW step (the case no longer tests the skip)"
fi
# ZeRO-Offload changes where the optimizer runs, not what it computes.
same z2-cpu offload-cpu "--offload-optimizer equals no offload on the CPU (dp 2, ZeRO-2)"
same bf16one-sim offbf16-sim "--offload-optimizer equals no offload on the device (bf16, 1 rank)"
# The traffic line: the gradient down in fp32, the parameters up in bf16.
if grep -qE 'per step [1-9][0-9]* bytes device->host .* [1-9][0-9]* bytes host->device \(updated bf16' \
  "$tmp/offbf16-sim.log"; then
  ok "--offload-optimizer on the device prints its D2H/H2D bytes per step"
else
  bad "--offload-optimizer on the device prints its D2H/H2D bytes per step"
fi

# Checkpoints go through the host: a dp 2 ZeRO-2 run on the device saves at
# step 2 the same shard files as the CPU run, and resuming there on the device
# ends where the straight runs end (the run ids in COMPLETE and the JSON differ).
run ck-cpu 2 --zero-stage 2 --save-every 2 --checkpoint-dir "$tmp/ck-cpu"
run ck-sim 2 --zero-stage 2 --save-every 2 --checkpoint-dir "$tmp/ck-sim" --device sim
run ck-resume 2 --zero-stage 2 --checkpoint-dir "$tmp/ck-sim" --resume global_step2 --device sim
if [ -s "$tmp/ck-cpu/global_step2/rank_00001.safetensors" ] &&
  cmp -s "$tmp/ck-cpu/global_step2/rank_00001.safetensors" "$tmp/ck-sim/global_step2/rank_00001.safetensors" &&
  cmp -s "$tmp/z2-cpu.safetensors" "$tmp/ck-resume.safetensors"; then
  ok "--device sim checkpoints equal the CPU's, and resuming on the device ends bit for bit where the CPU run does"
else
  bad "--device sim checkpoint/resume (dp 2, ZeRO-2)"
  grep -h "error" "$tmp/ck-sim.log" "$tmp/ck-resume.log" | head -3 | sed 's/^/  /'
fi

# Bad inputs. A CUDA build on a GPU machine runs --device cuda instead.
for np in 1 2; do
  launch=()
  [ "$np" -gt 1 ] && launch=($mpirun -np "$np")
  out=$(OMP_NUM_THREADS=1 "${launch[@]}" "$bin" train $common --device cuda 2>&1 </dev/null)
  rc=$?
  n=$(grep -cE 'error: --device cuda: (this build has no CUDA backend|no GPU is visible)' <<<"$out")
  if [ $rc -ne 0 ] && [ "$n" -ge 1 ]; then
    ok "--device cuda without CUDA is an error ($np rank(s), exit $rc)"
  elif [ $rc -eq 0 ]; then
    echo "skip: --device cuda ran ($np rank(s)): this build and machine have a GPU"
  else
    bad "--device cuda without CUDA ($np rank(s)): exit $rc, output:"
    echo "$out" | tail -3 | sed 's/^/  /'
  fi
done
out=$(OMP_NUM_THREADS=1 "$bin" train $common --device tpu 2>&1)
if [ $? -ne 0 ] && grep -q "unknown device 'tpu' (valid: cpu, cuda, sim)" <<<"$out"; then
  ok "--device tpu names the valid devices"
else
  bad "--device tpu: $out"
fi
echo "{\"train_micro_batch_size_per_gpu\": 2, \"device\": \"sim\"}" >"$tmp/ds.json"
out=$(OMP_NUM_THREADS=1 "$bin" train $common --config "$tmp/ds.json" --device cpu 2>&1)
if [ $? -ne 0 ] && grep -q "contradicts device sim in" <<<"$out"; then
  ok "--device cpu against ds_config \"device\": \"sim\" is an error naming both"
else
  bad "--device cpu against ds_config device sim: $out"
fi
echo "device: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
