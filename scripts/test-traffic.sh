#!/usr/bin/env bash
# The communication ledger end to end: `mpirun -np 4 minispeed train
# --zero-stage S` for S = 0..3 must print a traffic table whose every row says
# measured == formula (parallel/comm/ledger.h), and the table must be there.
# With --tp 2 (dp 2 × tp 2) there are two tables, the dp group's (ZeRO's
# formula) and the tp group's (Megatron's count, parallel/tp/traffic.h), and
# both must match, with and without --sequence-parallel. With --pp the pp
# group's table (parallel/pp/traffic.h: 2(p·v − 1)·m·n activations and
# gradients, the tied wte's gradient, the norm's f64) must match per rank:
# pp 2 × dp 2, pp 4, interleaved, and tp 2 × pp 2. With --cp the cp group's
# table (parallel/cp/cp_step_traffic.h: per layer the algorithm's forward and
# backward exchange) must match beside the dp × cp group's and the tp group's:
# ulysses cp 2 × dp 2, ring and zigzag at cp 4, zigzag recomputed, cp 2 × tp 2.
# With --ep the ep group's all-to-all row (MoE, ep 2 × expert-dp 2).
#   scripts/test-traffic.sh BUILD_DIR
set -uo pipefail
bin=${1:?usage: scripts/test-traffic.sh BUILD_DIR}/minispeed
mpirun=${MPIRUN:-mpirun --oversubscribe}
# Tiny and odd-sized (Ψ and the flat groups need padding), 3 steps, 2
# micro-steps (stage 2 and 3 communicate on each), an evaluation inside the
# run (its traffic must stay out of the per-step rows).
common="--n-layer 2 --n-head 2 --n-embd 30 --seq-len 15 --batch-size 2 --grad-accum 2 --steps 3
        --eval-every 2 --eval-batches 1 --sample-tokens 0 --log-every 10"
pass=0 fail=0
for stage in 0 1 2 3; do
  out=$(OMP_NUM_THREADS=1 timeout 120 $mpirun -np 4 "$bin" train $common --zero-stage "$stage" 2>&1)
  table=$(sed -n '/^communication per training step/,/^traffic: /p' <<< "$out")
  if grep -q '^traffic: measured == formula for every op (3 steps)$' <<< "$table" &&
     ! grep -qE ' NO$' <<< "$table" && grep -qE '^  total .* yes$' <<< "$table"; then
    echo "ok: ZeRO stage $stage on 4 ranks: measured == formula"
    pass=$((pass + 1))
  else
    echo "FAILED: ZeRO stage $stage on 4 ranks:"
    sed 's/^/  /' <<< "${table:-$out}" | tail -n 30
    fail=$((fail + 1))
  fi
done
for run in "0" "3" "1 sp" "3 sp"; do
  set -- $run
  stage=$1 sp=${2:+--sequence-parallel}
  # --seq-len 16: sequence parallelism splits it over tp 2.
  out=$(OMP_NUM_THREADS=1 timeout 120 $mpirun -np 4 "$bin" train $common --seq-len 16 --tp 2 \
        --zero-stage "$stage" $sp 2>&1)
  tables=$(sed -n '/^communication per training step/,/^traffic: /p' <<< "$out")
  label="tp 2 × dp 2, ZeRO stage $stage${sp:+, sequence parallel}"
  if [ "$(grep -c '^traffic: measured == formula for every op (3 steps)$' <<< "$tables")" -eq 2 ] &&
     grep -q '^communication per training step (tensor parallelism' <<< "$tables" &&
     ! grep -qE ' NO$' <<< "$tables"; then
    echo "ok: $label: measured == formula for the dp and the tp group"
    pass=$((pass + 1))
  else
    echo "FAILED: $label:"
    sed 's/^/  /' <<< "${tables:-$out}" | tail -n 40
    fail=$((fail + 1))
  fi
done
for run in "4 --pp 2 --zero-stage 1" "4 --pp 4 --n-layer 4 --pipe-schedule gpipe" \
  "4 --pp 2 --n-layer 4 --pipe-schedule interleaved --virtual-stages 2" \
  "4 --pp 2 --tp 2 --seq-len 16"; do
  set -- $run
  np=$1
  shift
  out=$(OMP_NUM_THREADS=1 timeout 120 $mpirun -np "$np" "$bin" train $common "$@" 2>&1)
  table=$(sed -n '/^communication per training step (pipeline/,/^traffic: /p' <<< "$out")
  label="$np ranks, $*"
  if grep -q '^traffic: measured == formula for every op (3 steps)$' <<< "$table" &&
     ! grep -qE ' NO$' <<< "$table" && grep -qE '^  send .* yes$' <<< "$table" &&
     [ "$(sed -n '/^communication per training step/,/^traffic: /p' <<< "$out" |
          grep -c '^traffic: measured == formula')" -eq "$(grep -c '^communication per training step' <<< "$out")" ]; then
    echo "ok: $label: the pp group's measured == formula, per rank"
    pass=$((pass + 1))
  else
    echo "FAILED: $label:"
    sed 's/^/  /' <<< "${table:-$out}" | tail -n 30
    fail=$((fail + 1))
  fi
done
for run in "--cp 2 --zero-stage 1" "--cp 4 --cp-algo ring" "--cp 4 --cp-algo zigzag" \
  "--cp 2 --cp-algo zigzag --checkpoint-activations --zero-stage 3" \
  "--cp 2 --tp 2 --cp-algo allgather"; do
  # --seq-len 16: cp 4 (and zigzag's 2·cp chunks) split it.
  out=$(OMP_NUM_THREADS=1 timeout 120 $mpirun -np 4 "$bin" train $common --seq-len 16 $run 2>&1)
  tables=$(sed -n '/^communication per training step/,/^traffic: /p' <<< "$out")
  label="4 ranks, $run"
  if grep -q '^communication per training step (context parallelism' <<< "$tables" &&
     [ "$(grep -c '^traffic: measured == formula for every op (3 steps)$' <<< "$tables")" -eq \
       "$(grep -c '^communication per training step' <<< "$tables")" ] &&
     ! grep -qE ' NO$' <<< "$tables"; then
    echo "ok: $label: the cp group's measured == formula (and every other group's)"
    pass=$((pass + 1))
  else
    echo "FAILED: $label:"
    sed 's/^/  /' <<< "${tables:-$out}" | tail -n 30
    fail=$((fail + 1))
  fi
done
# Expert parallelism (parallel/ep/ep_report.h): the ep group's all-to-all
# bytes against 4·E·capacity·C·4·(P−1)/P per MoE layer and micro-step with
# the gates' capacities (dropping: the same every forward; no dropping: the
# ep group's largest load, different each forward), beside the dense ZeRO
# table over dp and the experts' over expert-dp (ep 2 × expert-dp 2); 48 calls =
# 3 steps × 2 micro-steps × 2 layers × 4.
for run in "--ep 2 --zero-stage 1" "--ep 2 --zero-stage 2 --moe-drop-tokens off --moe-top-k 2"; do
  out=$(OMP_NUM_THREADS=1 timeout 120 $mpirun -np 4 "$bin" train $common --moe-experts 4 \
        --moe-every 1 $run 2>&1)
  ep_row=$(sed -n '/^expert parallelism (ep 2): all-to-all bytes/,/^  per MoE layer/p' <<< "$out")
  tables=$(sed -n '/^communication per training step/,/^traffic: /p' <<< "$out")
  label="4 ranks, MoE $run"
  if grep -qE '^  all_to_all +48 +[0-9]+ +[0-9]+ +[0-9]+ +yes$' <<< "$ep_row" &&
     grep -q "the experts' ZeRO stage" <<< "$tables" &&
     [ "$(grep -c '^traffic: measured == formula for every op (3 steps)$' <<< "$tables")" -eq 2 ] &&
     ! grep -qE ' NO$' <<< "$tables"; then
    echo "ok: $label: the ep all-to-all measured == formula (and the dp and expert-dp tables)"
    pass=$((pass + 1))
  else
    echo "FAILED: $label:"
    sed 's/^/  /' <<< "${ep_row:-$out}" | tail -n 30
    sed 's/^/  /' <<< "$tables" | tail -n 30
    fail=$((fail + 1))
  fi
done
echo "traffic: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
