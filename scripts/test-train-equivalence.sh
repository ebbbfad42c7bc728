#!/usr/bin/env bash
# End to end through the program: `mpirun -np D minispeed train --zero-stage S`
# with --batch-size B must follow one process with --batch-size D·B step for
# step (training loss and validation loss, as printed to 4 decimals). Then
# tensor parallelism: `mpirun -np N minispeed train --tp T` (dp = N/T replicas
# of batch B) must follow one process with batch dp·B in its losses, its
# gradient norms, and its final saved weights (every float within the same
# 1.5e-4), with and without --sequence-parallel, under ZeRO 0-3 over dp.
# Then pipeline parallelism the same way: `--pp P --grad-accum m` (m
# micro-batches through the schedule) on dp = 2 replicas against one process
# with batch 2·B and --grad-accum m, and the 3D run tp 2 × pp 2 × dp 2.
# Then context parallelism: `--cp C --cp-algo A` (each rank T/C positions)
# against one process, alone and with dp, ZeRO, tp, dropout and accumulation.
# Last, --checkpoint-activations against the same run without it: identical.
# Then MoE over dp with ZeRO 1 and 2 against one process (no drops, no l_aux).
#   scripts/test-train-equivalence.sh BUILD_DIR
set -uo pipefail
bin=$1/minispeed
common="--n-layer 2 --n-head 2 --n-embd 32 --seq-len 32 --steps 6 --lr 3e-3 --eval-every 3
        --eval-batches 2 --log-every 1 --sample-tokens 0"
source "$(dirname "$0")/lib/compare.sh"  # losses, norms, within, same_weights
# job_ok LABEL COMMAND...: the command must finish with exit 0 (within 30 s of
# any communicator wait), e.g. rank 0 sampling alone mid-training.
job_ok() {
  local label=$1
  shift
  if OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=30 "$@" >/dev/null 2>&1; then
    echo "ok: $label"
    pass=$((pass + 1))
  else
    echo "FAILED: $label"
    fail=$((fail + 1))
  fi
}

reference=$(OMP_NUM_THREADS=1 "$bin" train $common --batch-size 8 | losses)
pass=0 fail=0
# The last run forces Open MPI's TCP transport (no shared memory), as between
# two machines (`mpirun --hostfile`); on one machine it goes over loopback.
tcp="--mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include lo"
for run in "2 0" "2 2" "4 1" "4 3" "2 2 tcp"; do
  set -- $run
  ranks=$1 stage=$2 transport=${3:-}
  extra=""
  [ "$transport" = tcp ] && extra=$tcp
  got=$(OMP_NUM_THREADS=1 ${MPIRUN:-mpirun --oversubscribe} $extra -np "$ranks" "$bin" train $common \
        --batch-size $((8 / ranks)) --zero-stage "$stage" | losses)
  # Equal to print precision; allow one unit in the last printed digit for rounding.
  if within 1.5e-4 "$reference" "$got"; then
    echo "ok: $ranks ranks, ZeRO stage $stage follow one process${transport:+ (over $transport)}"
    pass=$((pass + 1))
  else
    echo "FAILED: $ranks ranks, ZeRO stage $stage${transport:+ over $transport} diverge from one process:"
    paste <(echo "$reference") <(echo "$got") | sed 's/^/  /'
    fail=$((fail + 1))
  fi
done
# Dropout: each rank draws its own masks (rank r's stream), so dp runs follow
# DDP with the same streams, not one process. ZeRO-3 keeps the forward's masks
# (it re-gathers parameters for backward, parallel/zero/stage3.h): its losses
# and gradient norms must be DDP's, with gradient accumulation and clipping.
zdrop="$common --dropout 0.1 --batch-size 4 --grad-accum 2 --grad-clip 0.5"
ddp_drop=$(OMP_NUM_THREADS=1 ${MPIRUN:-mpirun --oversubscribe} -np 2 "$bin" train $zdrop \
           --zero-stage 0 2>&1 | grep -oE 'loss [0-9.]+|val [0-9.]+|norm [0-9.]+' | awk '{print $2}')
z3_drop=$(OMP_NUM_THREADS=1 ${MPIRUN:-mpirun --oversubscribe} -np 2 "$bin" train $zdrop \
          --zero-stage 3 2>&1 | grep -oE 'loss [0-9.]+|val [0-9.]+|norm [0-9.]+' | awk '{print $2}')
if within 1.5e-4 "$ddp_drop" "$z3_drop"; then
  echo "ok: 2 ranks, ZeRO stage 3 with --dropout 0.1 follow DDP with the same masks"
  pass=$((pass + 1))
else
  echo "FAILED: 2 ranks, ZeRO stage 3 with --dropout 0.1 diverge from DDP (DDP | ZeRO-3):"
  paste <(echo "$ddp_drop") <(echo "$z3_drop") | sed 's/^/  /'
  fail=$((fail + 1))
fi
# Sampling mid-training is rank 0 alone; under ZeRO-3 that must not enter the
# per-block gathers (collectives) on one rank only.
job_ok "sampling mid-training with ZeRO-3 on 2 ranks" ${MPIRUN:-mpirun --oversubscribe} -np 2 \
  "$bin" train $common --batch-size 4 --zero-stage 3 --sample-every 2

# ---- tensor parallelism: losses, norms and saved weights ----
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tpcommon="$common --n-head 4"
# follows LABEL REF_OUTPUT OUTPUT REF_WEIGHTS WEIGHTS: a parallel run against
# one process — its losses, then its gradient norms, then its saved weights.
follows() {
  local label=$1 ref=$2 out=$3 problem=""
  if ! within 1.5e-4 "$(losses <<< "$ref")" "$(losses <<< "$out")"; then
    problem="losses differ"
  elif ! within 1.5e-3 "$(norms <<< "$ref")" "$(norms <<< "$out")"; then
    problem="gradient norms differ"
  elif ! same_weights "$4" "$5"; then
    problem="saved weights differ"
  fi
  if [ -z "$problem" ]; then
    echo "ok: $label follows one process"
    pass=$((pass + 1))
  else
    echo "FAILED: $label: $problem (one process | parallel; losses, then norms):"
    paste <(losses <<< "$ref"; norms <<< "$ref") <(losses <<< "$out"; norms <<< "$out") |
      sed 's/^/  /'
    grep -E 'error' <<< "$out" | head -n 3 | sed 's/^/  /'
    fail=$((fail + 1))
  fi
}
# tp_case NAME EXTRA_FLAGS -- RUNS...: one reference (one process, batch 8),
# then each run "RANKS TP STAGE [sp]" with batch 8·TP/RANKS per replica.
tp_case() {
  local name=$1 extra=$2 ref
  shift 3
  ref=$(OMP_NUM_THREADS=1 "$bin" train $tpcommon $extra --batch-size 8 \
        --save-weights "$tmp/ref.safetensors" 2>&1)
  for run in "$@"; do
    set -- $run
    local ranks=$1 t=$2 stage=$3 sp=${4:+--sequence-parallel} out
    out=$(OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=60 ${MPIRUN:-mpirun --oversubscribe} -np "$ranks" \
          "$bin" train $tpcommon $extra --batch-size $((8 * t / ranks)) --tp "$t" \
          --zero-stage "$stage" $sp --save-weights "$tmp/tp.safetensors" 2>&1)
    follows "$name: $ranks ranks, tp $t × dp $((ranks / t)), ZeRO $stage${sp:+, sequence parallel}" \
      "$ref" "$out" "$tmp/ref.safetensors" "$tmp/tp.safetensors"
    rm -f "$tmp/tp.safetensors"
  done
}
tp_case "tp" "" -- "2 2 0" "2 2 0 sp" "4 4 0" "4 4 0 sp" "4 2 0" "4 2 1" "4 2 2" "4 2 3" \
  "4 2 0 sp" "4 2 1 sp" "4 2 2 sp" "4 2 3 sp"
# Gradient accumulation with clipping that acts every step (norms are > 0.5).
tp_case "tp, --grad-accum 2 --grad-clip 0.5" "--grad-accum 2 --grad-clip 0.5" -- "4 2 1 sp" "4 2 2"
# Dropout by Megatron's rule: the same masks as one process (dp 1: one mask).
tp_case "tp, --dropout 0.1" "--dropout 0.1" -- "2 2 0" "2 2 0 sp"
# --init-from a serial file: each tp rank cuts it; the weights saved at the end
# are gathered back into the serial layout.
OMP_NUM_THREADS=1 "$bin" train $tpcommon --batch-size 8 --steps 2 \
  --save-weights "$tmp/start.safetensors" > /dev/null 2>&1
tp_case "tp, --init-from" "--init-from $tmp/start.safetensors" -- "4 2 2 sp"
# Sampling mid-training under tp and ZeRO-3: every rank gathers (dp, then tp)
# before rank 0 samples alone.
job_ok "sampling mid-training with tp 2 × dp 2 and ZeRO-3" ${MPIRUN:-mpirun --oversubscribe} -np 4 \
  "$bin" train $tpcommon --batch-size 4 --tp 2 --zero-stage 3 --sample-every 2

# ---- pipeline parallelism: losses, norms and saved weights ----
# pp_case NAME EXTRA_FLAGS -- "RANKS PP TP STAGE SCHEDULE M [V]"...: each
# against one process with batch 8 and --grad-accum M (dp = RANKS / (PP·TP)
# replicas of batch 8 / dp; V virtual stages per rank for interleaved).
ppcommon="--n-layer 4 --n-head 4 --n-embd 32 --seq-len 32 --steps 3 --lr 3e-3 --eval-every 3
          --eval-batches 2 --log-every 1 --sample-tokens 0"
pp_case() {
  local name=$1 extra=$2 run ref out
  shift 3
  for run in "$@"; do
    set -- $run
    local ranks=$1 p=$2 t=$3 stage=$4 sched=$5 m=$6 v=${7:-1} dp=$(($1 / ($2 * $3)))
    ref=$(OMP_NUM_THREADS=1 "$bin" train $ppcommon $extra --batch-size 8 --grad-accum "$m" \
          --save-weights "$tmp/ref.safetensors" 2>&1)
    out=$(OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=60 ${MPIRUN:-mpirun --oversubscribe} -np "$ranks" \
          "$bin" train $ppcommon $extra --batch-size $((8 / dp)) --grad-accum "$m" --pp "$p" \
          --tp "$t" --pipe-schedule "$sched" --virtual-stages "$v" --zero-stage "$stage" \
          --save-weights "$tmp/pp.safetensors" 2>&1)
    follows "$name: pp $p ($sched${7:+ × $v chunks}, m $m) × tp $t × dp $dp, ZeRO $stage" \
      "$ref" "$out" "$tmp/ref.safetensors" "$tmp/pp.safetensors"
    rm -f "$tmp/pp.safetensors"
  done
}
# m ∈ {1, p, 2p + 1} for p = 2 and 4, both schedules, dp 2 with ZeRO 1 (and
# ZeRO 0 once); tp 2 × pp 2 × dp 2; interleaved (2 chunks, m a multiple of p).
pp_case "pp" "" -- "4 2 1 1 1f1b 1" "4 2 1 1 1f1b 2" "4 2 1 1 1f1b 5" "4 2 1 1 gpipe 1" "4 2 1 1 gpipe 2" \
  "4 2 1 0 gpipe 5" "8 4 1 1 1f1b 1" "8 4 1 1 1f1b 4" "8 4 1 1 1f1b 9" "8 4 1 1 gpipe 4" \
  "8 4 1 1 gpipe 9" "8 2 2 1 1f1b 2" "8 2 2 0 gpipe 3" "4 2 1 1 interleaved 2 2" \
  "4 2 1 1 interleaved 4 2"
# Dropout: each block's generator lives on every rank and runs where the
# block runs, in micro-batch order, so one replica draws the serial masks.
pp_case "pp, --dropout 0.1" "--dropout 0.1" -- "2 2 1 0 1f1b 3" "4 4 1 0 gpipe 4"
# --init-from a serial file: every stage reads it and trains its part.
OMP_NUM_THREADS=1 "$bin" train $ppcommon --batch-size 8 --save-weights "$tmp/ppstart.safetensors" \
  > /dev/null 2>&1
pp_case "pp, --init-from" "--init-from $tmp/ppstart.safetensors" -- "4 2 1 1 1f1b 3"
# Sampling mid-training under tp × pp: every rank gathers the stages (then tp)
# before rank 0 samples alone.
job_ok "sampling mid-training with tp 2 × pp 2 × dp 2" ${MPIRUN:-mpirun --oversubscribe} -np 8 \
  "$bin" train $ppcommon --batch-size 4 --tp 2 --pp 2 --sample-every 2

# ---- activation checkpointing: the same run with and without, bit for bit ----
# --checkpoint-activations recomputes every block in backward, replaying its
# dropout masks: losses, norms and the saved weights must be IDENTICAL (cmp,
# not a tolerance), with dropout on; one process, dp 2 ZeRO 2 and ZeRO 3, tp 2, pp 2.
ckpt_case() {
  local label=$1 np=$2 run a b
  shift 2
  run="$ppcommon --dropout 0.1 $*"
  launch=""
  [ "$np" -gt 1 ] && launch="${MPIRUN:-mpirun --oversubscribe} -np $np"
  a=$(OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=60 $launch "$bin" train $run \
      --save-weights "$tmp/plain.safetensors" 2>&1 | grep -oE 'loss [0-9.]+|val [0-9.]+|norm [0-9.]+')
  b=$(OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=60 $launch "$bin" train $run --checkpoint-activations \
      --save-weights "$tmp/ckpt.safetensors" 2>&1 | grep -oE 'loss [0-9.]+|val [0-9.]+|norm [0-9.]+')
  if [ -n "$a" ] && [ "$a" = "$b" ] && cmp -s "$tmp/plain.safetensors" "$tmp/ckpt.safetensors"; then
    echo "ok: --checkpoint-activations, $label: identical losses, norms and weights"
    pass=$((pass + 1))
  else
    echo "FAILED: --checkpoint-activations, $label changes the run (without | with):"
    paste <(echo "$a") <(echo "$b") | sed 's/^/  /'
    fail=$((fail + 1))
  fi
  rm -f "$tmp/plain.safetensors" "$tmp/ckpt.safetensors"
}
ckpt_case "one process" 1 --batch-size 8
ckpt_case "dp 2, ZeRO 2" 2 --batch-size 4 --zero-stage 2
ckpt_case "dp 2, ZeRO 3" 2 --batch-size 4 --zero-stage 3
ckpt_case "tp 2" 2 --batch-size 8 --tp 2
ckpt_case "pp 2 (1f1b, 3 micro-batches)" 2 --batch-size 8 --pp 2 --grad-accum 3
# Mixture of experts (nn/moe.h) over dp with ZeRO 1 and 2: each rank routes
# its own tokens with its own capacity (as DeepSpeed), so a dp run equals one
# process with the global batch when nothing drops (--moe-drop-tokens off) and
# l_aux (a per-rank statistic) has coefficient 0; the experts are replicated
# parameters. Top-2 in every block; grad-accum splits the micro-batches too.
moe="$common --eval-every 0 --moe-experts 4 --moe-every 1 --moe-top-k 2 --moe-drop-tokens off --moe-aux-loss-coef 0"
moe_ref=$(OMP_NUM_THREADS=1 "$bin" train $moe --batch-size 8 | grep -oE 'loss [0-9.]+|norm [0-9.]+' | awk '{print $2}')
for run in "--batch-size 4 --zero-stage 1" "--batch-size 2 --grad-accum 2 --zero-stage 2"; do
  got=$(OMP_NUM_THREADS=1 ${MPIRUN:-mpirun --oversubscribe} -np 2 "$bin" train $moe $run |
        grep -oE 'loss [0-9.]+|norm [0-9.]+' | awk '{print $2}')
  if within 1.5e-4 "$moe_ref" "$got"; then
    echo "ok: MoE (4 experts, top-2, no drops) on 2 ranks, $run, follows one process"
    pass=$((pass + 1))
  else
    echo "FAILED: MoE on 2 ranks, $run diverges from one process (losses and norms):"
    paste <(echo "$moe_ref") <(echo "$got") | sed 's/^/  /'
    fail=$((fail + 1))
  fi
done
ckpt_case "cp 2 (zigzag)" 2 --batch-size 8 --cp 2 --cp-algo zigzag
ckpt_case "cp 2 × tp 2 (ulysses)" 4 --batch-size 8 --cp 2 --tp 2
# ---- context parallelism: losses, norms and saved weights ----
# cp_case NAME EXTRA_FLAGS -- "RANKS CP TP STAGE ALGO"...: each against one
# process with batch 8 (dp = RANKS / (CP·TP) replicas of batch 8 / dp; the cp
# ranks of a replica read the same windows and keep their positions).
cp_case() {
  local name=$1 extra=$2 ref out
  shift 3
  ref=$(OMP_NUM_THREADS=1 "$bin" train $tpcommon $extra --batch-size 8 \
        --save-weights "$tmp/ref.safetensors" 2>&1)
  for run in "$@"; do
    set -- $run
    local ranks=$1 c=$2 t=$3 stage=$4 algo=$5 dp=$(($1 / ($2 * $3)))
    out=$(OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=60 ${MPIRUN:-mpirun --oversubscribe} -np "$ranks" \
          "$bin" train $tpcommon $extra --batch-size $((8 / dp)) --cp "$c" --cp-algo "$algo" \
          --tp "$t" --zero-stage "$stage" --save-weights "$tmp/cp.safetensors" 2>&1)
    follows "$name: cp $c ($algo) × tp $t × dp $dp, ZeRO $stage" \
      "$ref" "$out" "$tmp/ref.safetensors" "$tmp/cp.safetensors"
    rm -f "$tmp/cp.safetensors"
  done
}
cp_case "cp" "" -- "2 2 1 0 ulysses" "2 2 1 0 ring" "2 2 1 0 zigzag" "4 4 1 0 ulysses" \
  "4 4 1 0 ring" "4 4 1 0 zigzag" "2 2 1 0 allgather" "4 2 1 1 ulysses" "4 2 1 3 zigzag" \
  "4 2 2 0 ulysses"
# Dropout: the residual and embedding masks are the serial mask's entries at a
# rank's positions; every algorithm draws the serial attention masks.
cp_case "cp, --dropout 0.1 --attn-dropout 0.1" "--dropout 0.1 --attn-dropout 0.1" -- \
  "2 2 1 0 ulysses" "2 2 1 0 zigzag"
cp_case "cp, --grad-accum 2 --grad-clip 0.5" "--grad-accum 2 --grad-clip 0.5" -- "4 2 1 3 ring"
# Sampling mid-training is rank 0 alone: under cp (and ZeRO-3) it must run on a
# serial copy, not on blocks whose attention is a collective over cp.
job_ok "sampling mid-training with cp 2 × dp 2 and ZeRO-3" ${MPIRUN:-mpirun --oversubscribe} -np 4 \
  "$bin" train $tpcommon --batch-size 4 --cp 2 --zero-stage 3 --sample-every 2

# Expert parallelism (parallel/ep/): --ep P splits the 4 experts over P
# consecutive dp ranks (dispatch and combine all-to-alls), experts averaged
# over the expert-dp group, dense parameters over dp. Capacity and l_aux are
# per rank (each rank gates its own tokens, as DeepSpeed), so the reference
# is honest in two ways: (1) without drops and with coefficient 0, one
# process with the global batch; (2) with drops and l_aux (top-1, capacity
# factor 1), --ep 1 on the same ranks, which gates the same per-rank token
# groups with replicated experts. Losses, norms and the saved weights (the
# experts gathered back to their serial names). (Eval reads B sequences per
# rank, so every run keeps the reference's B × ranks.)
# ep_case LABEL REF_NP REF_FLAGS -- "NP FLAGS"...
ep_case() {
  local label=$1 ref_np=$2 ref_flags=$3 ref out
  shift 4
  ref=$(OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=60 ${MPIRUN:-mpirun --oversubscribe} -np "$ref_np" \
        "$bin" train $epcommon $ref_flags --save-weights "$tmp/ep_ref.safetensors" 2>&1)
  for run in "$@"; do
    set -- $run
    local ranks=$1
    shift
    out=$(OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=60 ${MPIRUN:-mpirun --oversubscribe} -np "$ranks" \
          "$bin" train $epcommon "$@" --save-weights "$tmp/ep.safetensors" 2>&1)
    follows "$label: $ranks ranks, $*" "$ref" "$out" "$tmp/ep_ref.safetensors" "$tmp/ep.safetensors"
    rm -f "$tmp/ep.safetensors"
  done
}
epcommon="$common --eval-every 3 --moe-experts 4 --moe-every 1 --grad-clip 0.5"
ep_case "ep, top-2, no drops, l_aux coef 0" 1 \
  "--batch-size 8 --moe-top-k 2 --moe-drop-tokens off --moe-aux-loss-coef 0" -- \
  "2 --batch-size 4 --moe-top-k 2 --moe-drop-tokens off --moe-aux-loss-coef 0 --ep 2" \
  "4 --batch-size 2 --moe-top-k 2 --moe-drop-tokens off --moe-aux-loss-coef 0 --ep 4 --zero-stage 1" \
  "4 --batch-size 2 --moe-top-k 2 --moe-drop-tokens off --moe-aux-loss-coef 0 --ep 2 --zero-stage 2"
ep_case "ep, top-1, drops and l_aux, against --ep 1 on 2 ranks" 2 "--batch-size 4 --moe-top-k 1" -- \
  "2 --batch-size 4 --moe-top-k 1 --ep 2 --zero-stage 1"
ep_case "ep × dp, top-2, drops and l_aux, grad-accum, against --ep 1 on 4 ranks" 4 \
  "--batch-size 2 --grad-accum 2 --moe-top-k 2" -- \
  "4 --batch-size 2 --grad-accum 2 --moe-top-k 2 --ep 2 --zero-stage 2" \
  "4 --batch-size 2 --grad-accum 2 --moe-top-k 2 --ep 4"
echo "train equivalence: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
