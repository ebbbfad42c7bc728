#!/usr/bin/env bash
# The layout matrix (issue 23): MATRIX_N layouts drawn at random (seed
# MATRIX_SEED, printed first) from dp × tp × pp × cp × ep on 2, 4 or 8 ranks,
# ZeRO stage, pipeline schedule and virtual stages, grad-accum, sequence
# parallelism, activation checkpointing, dropout, bf16/fp16/fp32, --device
# sim, and a resume midway at another layout. Each run is compared with ONE
# process on the same data (the same global batch dp·B, the same
# --grad-accum, the same seed): every printed loss, validation loss and
# gradient norm, and the saved weights.
#  - Tolerances: fp32 as scripts/test-train-equivalence.sh (1.5e-4 on losses
#    and weights, one unit of the 4 printed decimals; 1.5e-3 on the 3-decimal
#    norms): dp, tp, cp and the pipeline's stage sums add in another order
#    than one process, so only rounding may differ. bf16/fp16 as
#    scripts/test-mixed-precision.sh's dp case (5e-3 on losses; norms 2e-2;
#    weights steps·2·lr + largest/128, tests/mpi/test_mixed.cpp's bound):
#    each rank rounds its 16-bit gradients before the average.
#  - Bit-exact where the reduction order is fixed: --checkpoint-activations
#    recomputes the same ops in the same order, and --device sim runs the same
#    kernels through the device path, so a draw with either is ALSO run
#    without it at the same layout, and the two must print the same numbers
#    and save the same bytes (cmp).
#  - What stays apart from one process, by design, is not drawn: dropout
#    with dp > 1 (each replica draws its own masks, as DDP), --attn-dropout
#    under --tp (Megatron's per-tp-rank stream, README "Dropout"), MoE with
#    token drops or l_aux (per-rank capacity and statistic, as DeepSpeed):
#    MoE draws run --moe-drop-tokens off --moe-aux-loss-coef 0, the honest
#    reference of scripts/test-train-equivalence.sh's ep cases.
#  - Resume: a draw with one runs its layout A for all steps saving a
#    checkpoint at step RESUME_AT, then layout B (other ranks/tp/pp/cp/ep/ZeRO,
#    the same global batch, accumulation and precision) resumes from it; B's
#    steps after RESUME_AT and its final weights must follow one process too.
# Every draw satisfies the refusals of cli/train_config.cpp, cli/train_moe.cpp
# and parallel/zero/mixed_precision.cpp: a refused draw is a bug in the drawer
# and fails. A failure prints the layout and the command that reproduces it.
#   scripts/test-layout-matrix.sh BUILD_DIR
#   MATRIX_N=200 MATRIX_SEED=7 scripts/test-layout-matrix.sh build   # another / a bigger draw
#   MATRIX_SEED=7 MATRIX_ONLY=12 scripts/test-layout-matrix.sh build # layout 12 of that draw alone
set -uo pipefail
build=${1:-build}
bin=$build/minispeed
source "$(dirname "$0")/lib/compare.sh"  # losses, norms, within, same_weights
seed=${MATRIX_SEED:-23}
n=${MATRIX_N:-40}
only=${MATRIX_ONLY:-}
mpirun=${MPIRUN:-mpirun --oversubscribe}
steps=4 RESUME_AT=2 lr=3e-3
# 4 layers (pp 2 × 2 virtual stages or pp 4), 4 heads (tp × cp ≤ 4 for
# ulysses), T 16 (zigzag at cp 8 = 16 chunks; sp at tp 4).
common="--n-layer 4 --n-head 4 --n-embd 32 --seq-len 16 --steps $steps --lr $lr --eval-every $steps
        --eval-batches 1 --log-every 1 --sample-tokens 0 --grad-clip 1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "layout matrix: MATRIX_SEED=$seed MATRIX_N=$n${only:+ MATRIX_ONLY=$only}"

# A 31-bit LCG (glibc's constants) so a seed draws the same layouts in every
# bash; layout k starts from its own state, so MATRIX_ONLY=k needs no others.
rng=0
pick() {  # pick CHOICE...: one of the arguments, into $r
  rng=$((rng * 1103515245 + 12345))
  rng=$((rng % 2147483648))
  local i=$((rng / 256 % $#))
  shift "$i"
  r=$1
}
chance() {  # chance PERCENT: true that often
  pick $(seq 0 99)
  [ "$r" -lt "$1" ]
}

# draw_layout [FIXED]: sets ranks tp pp cp dp ep zero sched v accum sp algo
# prec dev ckpt drop B. With FIXED=resume it keeps moe, accum, prec, dev, drop
# and the global batch G of layout A, so both layouts train the same run.
draw_layout() {
  local fixed=${1:-} d try
  for try in $(seq 1 50); do
    pick 2 2 4 4 8
    ranks=$r
    tp=1 pp=1 cp=1 ep=1 sched=1f1b v=1 sp="" algo=ulysses ckpt=""
    if [ "$moe" = 1 ]; then
      dp=$ranks
      d=""
      for e in 1 2 4; do [ $((dp % e)) = 0 ] && d="$d $e"; done
      pick $d
      ep=$r
      pick 0 1 2
      zero=$r
    else
      d=""
      for t in 1 2 4; do [ $((ranks % t)) = 0 ] && d="$d $t"; done
      pick $d
      tp=$r
      d=""
      for p in 1 2 4; do [ $((ranks / tp % p)) = 0 ] && d="$d $p"; done
      pick $d
      pp=$r
      if [ "$pp" = 1 ]; then
        d=""
        for c in 1 2 4 8; do [ $((ranks / tp % c)) = 0 ] && d="$d $c"; done
        pick $d
        cp=$r
      fi
      dp=$((ranks / tp / pp / cp))
      if [ "$pp" -gt 1 ]; then
        pick 0 1
        zero=$r
        if [ "$pp" = 2 ]; then pick gpipe 1f1b interleaved; else pick gpipe 1f1b; fi
        sched=$r
        [ "$sched" = interleaved ] && v=2
      else
        pick 0 1 2 3
        zero=$r
      fi
      if [ "$cp" -gt 1 ]; then
        # ulysses splits the heads: n_head 4 must divide by tp·cp.
        if [ $((4 % (tp * cp))) = 0 ]; then pick ulysses ring zigzag allgather; else pick ring zigzag allgather; fi
        algo=$r
      fi
      [ "$tp" -gt 1 ] && [ "$pp" = 1 ] && [ "$cp" = 1 ] && chance 50 && sp=--sequence-parallel
      chance 25 && ckpt=--checkpoint-activations
    fi
    if [ "$fixed" = resume ]; then
      [ $((G % dp)) = 0 ] || continue
      B=$((G / dp))
    else
      if [ "$dp" -ge 8 ]; then B=1; else pick 1 2; B=$r; fi
      if [ "$sched" = interleaved ]; then pick $pp $((2 * pp)); else pick 1 2 3; fi
      accum=$r
      prec=fp32
      [ "$tp" = 1 ] && [ "$pp" = 1 ] && [ "$cp" = 1 ] && [ "$ep" = 1 ] && chance 35 && { pick bf16 fp16; prec=$r; }
      dev=cpu
      [ "$moe" = 0 ] && [ "$cp" = 1 ] && chance 20 && dev=sim
      drop=""
      # One process's masks: dp 1, and attention dropout only without tp.
      if [ "$dp" = 1 ] && chance 50; then
        drop="--dropout 0.1"
        # (and on the CPU: the device attention kernels take no mask).
        [ "$tp" = 1 ] && chance 50 && [ "$dev" = cpu ] && drop="$drop --attn-dropout 0.1"
      fi
    fi
    # What layout A fixed must hold at layout B too.
    [ "$sched" = interleaved ] && [ $((accum % pp)) != 0 ] && continue
    [ "$prec" != fp32 ] && { [ "$tp" != 1 ] || [ "$pp" != 1 ] || [ "$cp" != 1 ] || [ "$ep" != 1 ]; } && continue
    [ "$dev" = sim ] && [ "$cp" != 1 ] && continue
    [ -n "$drop" ] && [ "$dp" != 1 ] && continue
    [[ $drop == *attn* ]] && { [ "$tp" != 1 ] || [ "$dev" != cpu ]; } && continue
    return 0
  done
  return 1
}

# flags_of: the minispeed flags of the layout in the variables.
flags_of() {
  local f="--batch-size $B --grad-accum $accum --zero-stage $zero"
  [ "$tp" -gt 1 ] && f="$f --tp $tp"
  [ "$pp" -gt 1 ] && f="$f --pp $pp --pipe-schedule $sched"
  [ "$v" -gt 1 ] && f="$f --virtual-stages $v"
  [ "$cp" -gt 1 ] && f="$f --cp $cp --cp-algo $algo"
  [ "$moe" = 1 ] && f="$f --moe-experts 4 --moe-every 2 --moe-top-k 2 --moe-drop-tokens off --moe-aux-loss-coef 0"
  [ "$ep" -gt 1 ] && f="$f --ep $ep"
  [ "$prec" != fp32 ] && f="$f --$prec"
  [ "$dev" != cpu ] && f="$f --device $dev"
  echo "$f${sp:+ $sp}${ckpt:+ $ckpt}${drop:+ $drop}"
}
# ref_flags_of: one process with the same global batch and data.
ref_flags_of() {
  local f="--batch-size $((B * dp)) --grad-accum $accum"
  [ "$moe" = 1 ] && f="$f --moe-experts 4 --moe-every 2 --moe-top-k 2 --moe-drop-tokens off --moe-aux-loss-coef 0"
  [ "$prec" != fp32 ] && f="$f --$prec"
  echo "$f${drop:+ $drop}"
}
# cmdline RANKS FLAGS: the command a person can paste.
cmdline() {
  local launch=""
  [ "$1" -gt 1 ] && launch="$mpirun -np $1 "
  echo "OMP_NUM_THREADS=1 ${launch}$bin train $(echo $common) $2"
}
train() {  # train RANKS OUT FLAGS...: output in OUT.log, weights in OUT.safetensors
  local np=$1 out=$2 launch=()
  shift 2
  [ "$np" -gt 1 ] && launch=($mpirun -np "$np")
  OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=60 "${launch[@]}" "$bin" train $common "$@" \
    --save-weights "$out.safetensors" >"$out.log" 2>&1 </dev/null
}
# largest_weight FILE: the largest |f32| of a safetensors file.
largest_weight() {
  local h
  h=$(head -c 8 "$1" | od -A n -t u8 | tr -d ' ')
  od -A n -v -t f4 -w4 -j $((8 + h)) "$1" | awk '{ x = $1 < 0 ? -$1 : $1; if (x > m) m = x } END { print m + 0 }'
}
# from_step K: the printed numbers (loss, norm, val) of the steps after K.
from_step() { awk -v k="$1" '/^step +[0-9]+\// { split($2, s, "/"); if (s[1] + 0 > k) print }'; }

pass=0 fail=0
failed=""
for k in ${only:-$(seq 1 "$n")}; do
  rng=$((seed * 7919 + k * 104729))
  rng=$((rng % 2147483648))
  pick 0 0 0 0 1
  moe=$r
  draw_layout || { echo "FAILED: layout $k: the drawer found no layout (a drawer bug)"; fail=$((fail + 1)); continue; }
  A_ranks=$ranks A=$(flags_of) R=$(ref_flags_of)
  desc="$ranks ranks: tp $tp × pp $pp × cp $cp × dp $dp (ep $ep), ZeRO $zero, $([ "$pp" -gt 1 ] && echo "$sched v$v, ")accum $accum, $prec, $dev${sp:+, sp}${ckpt:+, ckpt}${drop:+, $drop}"
  resume=0 B_ranks="" Bf=""
  if chance 30; then
    G=$((B * dp))
    if draw_layout resume; then
      resume=1 B_ranks=$ranks Bf=$(flags_of)
      desc="$desc; resumed at step $RESUME_AT on $ranks ranks: tp $tp × pp $pp × cp $cp × dp $dp (ep $ep), ZeRO $zero"
    fi
  fi
  repro="MATRIX_SEED=$seed MATRIX_ONLY=$k scripts/test-layout-matrix.sh $build"
  d=$tmp/$k
  mkdir -p "$d"
  problem=""
  tol_l=1.5e-4 tol_n=1.5e-3 tol_w=1.5e-4
  train 1 "$d/ref" $R || problem="the one-process reference failed"
  if [[ $R == *--bf16* || $R == *--fp16* ]]; then
    # tests/mpi/test_mixed.cpp's bound: each rank rounds its gradient to 16
    # bits before the average, AdamW can turn that ulp into an update of the
    # other sign (2·lr a step), and a 16-bit ulp of the largest weight.
    tol_l=5e-3 tol_n=2e-2
    tol_w=$(largest_weight "$d/ref.safetensors" | awk -v s=$steps -v lr=$lr '{ print s * 2 * lr + $1 / 128 }')
  fi
  save=""
  [ "$resume" = 1 ] && save="--save-every $RESUME_AT --checkpoint-dir $d/ckpt"
  if [ -z "$problem" ]; then
    train "$A_ranks" "$d/a" $A $save || problem="the run failed (refused or crashed: $(grep -m1 -i error "$d/a.log"))"
  fi
  if [ -z "$problem" ]; then
    ref=$(cat "$d/ref.log") out=$(cat "$d/a.log")
    if ! within $tol_l "$(losses <<<"$ref")" "$(losses <<<"$out")"; then
      problem="losses differ from one process"
    elif ! within $tol_n "$(norms <<<"$ref")" "$(norms <<<"$out")"; then
      problem="gradient norms differ from one process"
    elif ! same_weights "$d/ref.safetensors" "$d/a.safetensors" $tol_w; then
      problem="saved weights differ from one process (tolerance $tol_w)"
    fi
  fi
  # Bit-exact twins: the same layout without --checkpoint-activations / on the CPU.
  if [ -z "$problem" ] && { [[ $A == *--checkpoint-activations* ]] || [[ $A == *"--device sim"* ]]; }; then
    twin=$(sed -e 's/ --checkpoint-activations//' -e 's/ --device sim//' <<<"$A")
    if ! train "$A_ranks" "$d/twin" $twin; then
      problem="the twin run (without checkpointing, on the CPU) failed"
    elif [ "$(grep -oE '(loss|val|norm) [0-9.]+' "$d/a.log")" != "$(grep -oE '(loss|val|norm) [0-9.]+' "$d/twin.log")" ] ||
      ! cmp -s "$d/a.safetensors" "$d/twin.safetensors"; then
      problem="not bit-exact against the same layout without --checkpoint-activations / --device sim: $(cmdline "$A_ranks" "$twin")"
    fi
  fi
  if [ -z "$problem" ] && [ "$resume" = 1 ]; then
    if ! train "$B_ranks" "$d/b" $Bf --checkpoint-dir "$d/ckpt" --resume global_step$RESUME_AT; then
      problem="the resumed run failed ($(grep -m1 -i error "$d/b.log"))"
    else
      ref=$(from_step $RESUME_AT <"$d/ref.log") out=$(from_step $RESUME_AT <"$d/b.log")
      if ! within $tol_l "$(losses <<<"$ref")" "$(losses <<<"$out")" ||
        ! within $tol_n "$(norms <<<"$ref")" "$(norms <<<"$out")"; then
        problem="after resuming at the other layout, losses or norms differ from one process"
      elif ! same_weights "$d/ref.safetensors" "$d/b.safetensors" $tol_w; then
        problem="after resuming at the other layout, saved weights differ from one process"
      fi
    fi
  fi
  if [ -z "$problem" ]; then
    echo "ok: layout $k ($desc)"
    pass=$((pass + 1))
  else
    echo "FAILED: layout $k ($desc): $problem"
    echo "  reproduce: $repro"
    echo "  one process: $(cmdline 1 "$R --save-weights ref.safetensors")"
    echo "  layout:      $(cmdline "$A_ranks" "$A --save-weights a.safetensors${save:+ --save-every $RESUME_AT --checkpoint-dir ckpt}")"
    [ "$resume" = 1 ] && echo "  resumed:     $(cmdline "$B_ranks" "$Bf --checkpoint-dir ckpt --resume global_step$RESUME_AT --save-weights b.safetensors")"
    if [[ $problem == *resum* ]]; then
      paste <(from_step $RESUME_AT <"$d/ref.log" | losses; from_step $RESUME_AT <"$d/ref.log" | norms) \
        <(from_step $RESUME_AT <"$d/b.log" | losses; from_step $RESUME_AT <"$d/b.log" | norms) |
        sed 's/^/  one process | resumed (losses, then norms): /' | head -n 12
    else
      paste <(losses <"$d/ref.log"; norms <"$d/ref.log") <(losses <"$d/a.log" 2>/dev/null; norms <"$d/a.log" 2>/dev/null) |
        sed 's/^/  one process | layout (losses, then norms): /' | head -n 12
    fi
    fail=$((fail + 1))
    failed="$failed $k"
  fi
  rm -rf "$d"
done
echo "layout matrix (MATRIX_SEED=$seed, MATRIX_N=$n): $pass passed, $fail failed${failed:+ (layouts$failed)}"
[ "$fail" -eq 0 ]
