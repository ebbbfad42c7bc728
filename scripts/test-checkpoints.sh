#!/usr/bin/env bash
# Checkpoints end to end through the program (parallel/engine/checkpoint.h):
#  1. bit-exact resume: 20 steps straight vs 10 + resume + 10 at the same
#     layout give the same losses (loss.csv), byte-identical final weights
#     (--save-weights) and byte-identical step-20 checkpoints (weights AND
#     optimizer moments), for DDP (with dropout: the RNG streams resume),
#     ZeRO 1, 2, 3, tp 2, pp 2, 3D (dp 2 × tp 2 × pp 2), cp 2 (zigzag), MoE ep 2 × expert-dp 2,
#     bf16 ZeRO-3 and fp16
#     ZeRO-2 with overflows (the loss scale and skipped steps resume) — llm.c's test;
#  2. resume at another layout: a pp 2 and a 3D checkpoint continue at dp 2
#     ZeRO-3 and in one process, following the straight run within the
#     equivalence tolerance (scripts/test-train-equivalence.sh); a cp 2
#     checkpoint continues at cp 4 and at dp 2; an ep 2 × expert-dp 2 MoE
#     checkpoint continues at ep 4 and at ep 1, and consolidates;
#  3. `minispeed consolidate` of the 3D checkpoint equals its --save-weights
#     file byte for byte, sample / train --init-from read it, and PyTorch
#     (tests/ref/consolidated_loss.py) reproduces our loss on it;
#  4. a re-save of a tag killed at each point (MS_TEST_KILL_AT, test-only:
#     parallel/engine/checkpoint_folder.h) leaves a complete copy: resume
#     from latest continues from it, and the next save cleans up;
#  5. bad input on 2 ranks: one clear error, exit 1, no hang — damaged, mixed
#     (two saves' rank files), lying (n_layer, tp, world_size, a negative
#     optimizer.steps) checkpoints, and a --checkpoint-dir no save could
#     write, refused before step 1.
#   scripts/test-checkpoints.sh BUILD_DIR
set -uo pipefail
bin=$1/minispeed
data=data/tinyshakespeare.txt
common="--data $data --n-layer 2 --n-head 2 --n-embd 32 --seq-len 32 --lr 3e-3 --eval-every 0
        --log-every 1 --sample-tokens 0 --warmup 2 --schedule cosine"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAILED: $1"; fail=$((fail + 1)); }
run() {  # run RANKS ARGS...
  local ranks=$1
  shift
  if [ "$ranks" = 1 ]; then
    OMP_NUM_THREADS=1 "$bin" train $common "$@"
  else
    OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=60 ${MPIRUN:-mpirun --oversubscribe} -np "$ranks" "$bin" train $common "$@"
  fi
}
# within TOL A B: two non-empty columns of numbers, every pair within TOL.
within() {
  paste <(echo "$2") <(echo "$3") |
    awk -v tol="$1" '{ d = $1 - $2; if (d < 0) d = -d; if (d > tol || NF != 2) bad = 1 } END { exit bad || NR == 0 }'
}
csv_losses() { tail -n +2 "$1" | awk -F, -v from="$2" '$1 > from { print $1, $2 }'; }

# ---- 1. bit-exact resume at the same layout ----
for layout in "ddp|2|--zero-stage 0 --dropout 0.1 --batch-size 4" \
              "zero1|2|--zero-stage 1 --batch-size 4" \
              "zero2|2|--zero-stage 2 --batch-size 4 --grad-accum 2" \
              "zero3|2|--zero-stage 3 --batch-size 4 --dropout 0.1 --attn-dropout 0.1" \
              "tp2|2|--tp 2 --batch-size 8" \
              "pp2|2|--pp 2 --grad-accum 2 --batch-size 4" \
              "3d|8|--tp 2 --pp 2 --zero-stage 1 --grad-accum 2 --batch-size 2" \
              "cp2|2|--cp 2 --cp-algo zigzag --zero-stage 1 --batch-size 8" \
              "bf16|2|--bf16 --zero-stage 3 --batch-size 4" \
              "fp16|2|--fp16 --initial-scale-power 24 --loss-scale-window 3 --zero-stage 2 --batch-size 4" \
              "ep2|4|--moe-experts 4 --moe-every 1 --ep 2 --zero-stage 1 --batch-size 2"; do
  IFS='|' read -r name ranks flags <<<"$layout"
  d=$tmp/$name
  mkdir -p "$d/b"
  run "$ranks" $flags --steps 20 --save-every 10 --checkpoint-dir "$d/a" \
    --save-weights "$d/a.safetensors" >"$d/a.log" 2>&1 || { bad "$name: the straight run failed"; tail -3 "$d/a.log"; continue; }
  cp -r "$d/a/global_step10" "$d/b/"
  run "$ranks" $flags --steps 20 --save-every 10 --checkpoint-dir "$d/b" --resume global_step10 \
    --save-weights "$d/b.safetensors" >"$d/b.log" 2>&1 || { bad "$name: the resumed run failed"; tail -3 "$d/b.log"; continue; }
  same=1
  [ "$(csv_losses "$d/a.loss.csv" 10)" = "$(csv_losses "$d/b.loss.csv" 10)" ] && [ -n "$(csv_losses "$d/b.loss.csv" 10)" ] || same=0
  cmp -s "$d/a.safetensors" "$d/b.safetensors" || same=0
  for f in "$d"/a/global_step20/rank_*.safetensors; do
    cmp -s "$f" "$d/b/global_step20/$(basename "$f")" || same=0
  done
  if [ $same = 1 ]; then
    ok "$name ($ranks ranks): 10 + resume + 10 steps = 20 straight (losses, weights, step-20 checkpoint byte for byte)"
  else
    bad "$name ($ranks ranks): the resumed run differs from the straight one"
    paste <(csv_losses "$d/a.loss.csv" 10) <(csv_losses "$d/b.loss.csv" 10) | sed 's/^/  /'
  fi
done

# ---- 2. resume at another layout ----
# The checkpoint of pp 2 (batch 4 × 2 micro-batches × dp 1) continues at dp 2
# ZeRO-3 (batch 2 × 2 × dp 2 = the same 16 sequences per step) and alone.
for target in "dp2-zero3|2|--zero-stage 3 --grad-accum 2 --batch-size 2" \
              "serial|1|--grad-accum 2 --batch-size 4"; do
  IFS='|' read -r name ranks flags <<<"$target"
  for src in pp2 3d; do
    d=$tmp/x-$src-$name
    mkdir -p "$d"
    cp -r "$tmp/$src/a/global_step10" "$d/"
    if run "$ranks" $flags --steps 20 --checkpoint-dir "$d" --resume global_step10 \
      --save-weights "$d/w.safetensors" >"$d/log" 2>&1 &&
      within 1.5e-4 "$(csv_losses "$tmp/$src/a.loss.csv" 10 | awk '{print $2}')" \
        "$(csv_losses "$d/w.loss.csv" 10 | awk '{print $2}')"; then
      ok "a $src checkpoint resumes at $name ($ranks rank(s)) and follows the straight run"
    else
      bad "a $src checkpoint resumed at $name ($ranks rank(s))"
      tail -3 "$d/log"
    fi
  done
done

# With dropout, a block's dropout stream advanced only on the ranks of its
# stage: resumed at another layout, each stream must come from a saved rank
# that ran its block (restore_rng). Taking rank 0's for every block restarted
# the second stage's masks from the seed (found by test-layout-matrix.sh).
d=$tmp/pp2-dropout
mkdir -p "$d/b"
if run 2 --pp 2 --grad-accum 2 --batch-size 2 --dropout 0.1 --steps 4 --save-every 2 \
     --checkpoint-dir "$d/a" --save-weights "$d/a.safetensors" >"$d/a.log" 2>&1 &&
   cp -r "$d/a/global_step2" "$d/b/" &&
   run 1 --grad-accum 2 --batch-size 2 --dropout 0.1 --steps 4 --checkpoint-dir "$d/b" \
     --resume global_step2 --save-weights "$d/b.safetensors" >"$d/b.log" 2>&1 &&
   within 1.5e-4 "$(csv_losses "$d/a.loss.csv" 2 | awk '{print $2}')" \
     "$(csv_losses "$d/b.loss.csv" 2 | awk '{print $2}')"; then
  ok "a pp 2 checkpoint with dropout resumes alone with each block's own dropout stream"
else
  bad "a pp 2 checkpoint with dropout resumed alone diverges (dropout streams)"
  paste <(csv_losses "$d/a.loss.csv" 2) <(csv_losses "$d/b.loss.csv" 2) | sed 's/^/  /'
fi

# The cp 2 checkpoint (batch 8, one replica) continues at another cp size and
# without cp: cp 4 ring, and dp 2 (batch 4 each): the cp ranks hold
# replicated parameters and ZeRO partitions over dp × cp, so to the
# checkpoint they are data-parallel ranks.
for target in "cp4-ring|4|--cp 4 --cp-algo ring --zero-stage 1 --batch-size 8" \
              "dp2|2|--zero-stage 1 --batch-size 4"; do
  IFS='|' read -r name ranks flags <<<"$target"
  d=$tmp/x-cp2-$name
  mkdir -p "$d"
  cp -r "$tmp/cp2/a/global_step10" "$d/"
  if run "$ranks" $flags --steps 20 --checkpoint-dir "$d" --resume global_step10 \
    --save-weights "$d/w.safetensors" >"$d/log" 2>&1 &&
    within 1.5e-4 "$(csv_losses "$tmp/cp2/a.loss.csv" 10 | awk '{print $2}')" \
      "$(csv_losses "$d/w.loss.csv" 10 | awk '{print $2}')"; then
    ok "a cp2 checkpoint resumes at $name ($ranks rank(s)) and follows the straight run"
  else
    bad "a cp2 checkpoint resumed at $name ($ranks rank(s))"
    tail -3 "$d/log"
  fi
done

# The ep 2 × expert-dp 2 checkpoint (experts saved under their serial names
# by their holders, parallel/ep/) continues at ep 4 ZeRO-2 and at ep 1 (the
# experts replicated over dp 4): the same per-rank token groups, so the same
# routing, drops and l_aux; and consolidates to its --save-weights file.
for target in "ep4-zero2|4|--moe-experts 4 --moe-every 1 --ep 4 --zero-stage 2 --batch-size 2" \
              "ep1|4|--moe-experts 4 --moe-every 1 --zero-stage 1 --batch-size 2"; do
  IFS='|' read -r name ranks flags <<<"$target"
  d=$tmp/x-ep2-$name
  mkdir -p "$d"
  cp -r "$tmp/ep2/a/global_step10" "$d/"
  if run "$ranks" $flags --steps 20 --checkpoint-dir "$d" --resume global_step10 \
    --save-weights "$d/w.safetensors" >"$d/log" 2>&1 &&
    within 1.5e-4 "$(csv_losses "$tmp/ep2/a.loss.csv" 10 | awk '{print $2}')" \
      "$(csv_losses "$d/w.loss.csv" 10 | awk '{print $2}')"; then
    ok "an ep2 checkpoint resumes at $name ($ranks rank(s)) and follows the straight run"
  else
    bad "an ep2 checkpoint resumed at $name ($ranks rank(s))"
    tail -3 "$d/log"
  fi
done
if "$bin" consolidate "$tmp/ep2/a" "$tmp/ep2.safetensors" >"$tmp/c.log" 2>&1 &&
  cmp -s "$tmp/ep2.safetensors" "$tmp/ep2/a.safetensors"; then
  ok "consolidate of the ep2 checkpoint = its --save-weights file, byte for byte"
else
  bad "consolidate of the ep2 checkpoint differs from its --save-weights file"
  tail -3 "$tmp/c.log"
fi

# ---- 3. consolidate ----
if "$bin" consolidate "$tmp/3d/a" "$tmp/3d.safetensors" >"$tmp/c.log" 2>&1 &&
  cmp -s "$tmp/3d.safetensors" "$tmp/3d/a.safetensors"; then
  ok "consolidate of the 3D checkpoint (via 'latest') = its --save-weights file, byte for byte"
else
  bad "consolidate of the 3D checkpoint"
  cat "$tmp/c.log"
fi
if "$bin" sample --weights "$tmp/3d.safetensors" --tokens 20 >/dev/null 2>&1 &&
  run 1 --init-from "$tmp/3d.safetensors" --steps 3 --batch-size 4 >/dev/null 2>&1; then
  ok "sample --weights and train --init-from read the consolidated file"
else
  bad "sample / train --init-from could not read the consolidated file"
fi

# The PyTorch reference (tests/ref/consolidated_loss.py) loads the file and
# computes the loss our first logged step reports. torch is optional (CI
# installs only scripts/install-deps.sh's packages): skipped, visibly, without it.
py=""
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null && "$p" -c "import torch" 2>/dev/null; then py=$p; break; fi
done
if [ -z "$py" ]; then
  echo "skipped: PyTorch loading the consolidated file (no python3 with torch; scripts/install-deps.sh --dev installs python3-torch)"
else
  theirs=$("$py" tests/ref/consolidated_loss.py "$tmp/3d.safetensors" 4 32 | awk '{print $2}')
  ours=$(run 1 --init-from "$tmp/3d.safetensors" --steps 1 --batch-size 4 --warmup 0 |
         grep -oE 'loss [0-9.]+' | head -1 | awk '{print $2}')
  if within 1.5e-4 "$theirs" "$ours"; then
    ok "PyTorch (tests/ref/consolidated_loss.py) loads the consolidated file: loss $theirs, ours $ours"
  else
    bad "PyTorch's loss on the consolidated file ($theirs) differs from ours ($ours)"
  fi
fi

# ---- 4. a re-save killed at each point of the swap ----
# zero3's straight run left global_step10, global_step20 and latest ->
# global_step20. Resuming from global_step10 re-saves global_step20 (the
# replacement of a complete checkpoint, which once deleted it first); the
# save is killed (SIGKILL: no cleanup) at each phase, then `--resume latest`
# must continue from a complete step-20 copy, byte-identical to the
# straight run's, and the next save must leave no staging folder behind.
z3="--zero-stage 3 --batch-size 4 --dropout 0.1 --attn-dropout 0.1"  # as zero3 above
state() {  # what a killed save left: the tag in place? staging / set-aside folders?
  local d=$1
  echo "in-place:$([ -d "$d/global_step20" ] && echo yes || echo no)" \
    "tmp:$(find "$d" -maxdepth 1 -name 'global_step20.tmp-*' | wc -l)" \
    "tmp-complete:$(find "$d" -maxdepth 2 -path '*global_step20.tmp-*/COMPLETE' | wc -l)" \
    "old:$(find "$d" -maxdepth 1 -name 'global_step20.old-*' | wc -l)"
}
ref=""
for phase in "rank-files|in-place:yes tmp:1 tmp-complete:0 old:0" \
             "complete|in-place:yes tmp:1 tmp-complete:1 old:0" \
             "aside|in-place:no tmp:1 tmp-complete:1 old:1" \
             "in-place|in-place:yes tmp:0 tmp-complete:0 old:1" \
             "latest|in-place:yes tmp:0 tmp-complete:0 old:1"; do
  IFS='|' read -r name want <<<"$phase"
  d=$tmp/kill-$name
  cp -r "$tmp/zero3/a" "$d"
  MS_TEST_KILL_AT=$name run 2 $z3 --steps 20 --save-every 10 --checkpoint-dir "$d" \
    --resume global_step10 >"$d.killed.log" 2>&1
  rc=$?
  got=$(state "$d")
  if [ $rc -eq 0 ] || [ "$got" != "$want" ]; then
    bad "a save killed at '$name': exit $rc, left '$got', expected '$want'"
    continue
  fi
  same=1
  if run 2 $z3 --steps 30 --save-every 10 --checkpoint-dir "$d" --resume latest \
    --save-weights "$d.safetensors" >"$d.log" 2>&1 &&
    grep -q "resumed from 'latest' at step 20" "$d.log"; then
    for f in "$tmp"/zero3/a/global_step20/rank_*.safetensors; do
      cmp -s "$f" "$d/global_step20/$(basename "$f")" || same=0
    done
    [ -z "$(find "$d" -maxdepth 1 \( -name '*.tmp-*' -o -name '*.old-*' \))" ] || same=0
    [ "$(cat "$d/latest")" = global_step30 ] || same=0
    if [ -z "$ref" ]; then ref=$d.safetensors; else cmp -s "$ref" "$d.safetensors" || same=0; fi
  else
    same=0
    tail -3 "$d.log"
  fi
  if [ $same = 1 ]; then
    ok "a re-save killed at '$name' ($got): --resume latest continues from the complete step-20 copy, the next save cleans up"
  else
    bad "after a re-save killed at '$name', resume or the cleanup failed"
  fi
done

# ---- 5. bad input on 2 ranks: one error line, exit 1 ----
expect_error() {  # LABEL EXPECTED-SUBSTRING ARGS...
  local label=$1 want=$2
  shift 2
  local out
  out=$(timeout 60 ${MPIRUN:-mpirun --oversubscribe} -np 2 "$bin" train $common "$@" 2>&1)
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qF -- "$want" <<<"$out"; then
    ok "$label"
  else
    bad "$label (exit $rc)"
    echo "$out" | tail -5 | sed 's/^/  /'
  fi
}
d=$tmp/zero1
rm "$d/b/global_step10/rank_00001.safetensors"
expect_error "a missing rank file" \
  "error: checkpoint: rank file '$d/b/global_step10/rank_00001.safetensors' is missing" \
  --zero-stage 1 --batch-size 4 --steps 20 --checkpoint-dir "$d/b" --resume global_step10
d2=$tmp/zero2
head -c 1000 "$d2/b/global_step10/rank_00000.safetensors" >"$tmp/cut" && mv "$tmp/cut" "$d2/b/global_step10/rank_00000.safetensors"
expect_error "a truncated shard" \
  "error: load_safetensors: '$d2/b/global_step10/rank_00000.safetensors'" \
  --zero-stage 2 --batch-size 4 --steps 20 --checkpoint-dir "$d2/b" --resume global_step10
rm "$d/a/global_step20/COMPLETE"
expect_error "an interrupted save (no COMPLETE) named by latest" \
  "error: checkpoint: '$d/a/global_step20' is incomplete: it has no COMPLETE marker" \
  --zero-stage 1 --batch-size 4 --steps 30 --checkpoint-dir "$d/a" --resume latest
expect_error "another model shape" "but this run builds" \
  --zero-stage 1 --batch-size 4 --steps 20 --checkpoint-dir "$d/a" --resume global_step10 --n-embd 64
echo nowhere >"$d/a/latest"
expect_error "latest pointing nowhere" \
  "error: checkpoint: '$d/a/latest' names tag 'nowhere', but '$d/a/nowhere' does not exist" \
  --zero-stage 1 --batch-size 4 --steps 20 --checkpoint-dir "$d/a" --resume latest
# Two jobs' rank files in one folder: ddp's straight and resumed runs each
# saved global_step20 (the same state, bit for bit, but other save runs).
m=$tmp/mixed
mkdir -p "$m"
cp -r "$tmp/ddp/a/global_step20" "$m/"
cp "$tmp/ddp/b/global_step20/rank_00001."* "$m/global_step20/"
expect_error "rank files of two save runs in one checkpoint" \
  "error: checkpoint: '$m/global_step20/rank_00001.json' was written by save run '" \
  --zero-stage 0 --batch-size 4 --steps 30 --checkpoint-dir "$m" --resume global_step20
lie() {  # LABEL SED-EXPRESSION EXPECTED: ddp's global_step20 with rank 0's record edited
  local label=$1 edit=$2 want=$3 l=$tmp/lie-$RANDOM
  mkdir -p "$l"
  cp -r "$tmp/ddp/a/global_step20" "$l/"
  sed -i "$edit" "$l/global_step20/rank_00000.json"
  expect_error "$label" "error: checkpoint: '$l/global_step20/rank_00000.json': $want" \
    --zero-stage 0 --batch-size 4 --steps 30 --checkpoint-dir "$l" --resume global_step20
}
lie "a lying n_layer" 's/"n_layer": 2/"n_layer": 1000000/' \
  "model.n_layer 1000000, but the rank files hold the tensors of 2 layer(s) (h.0 to h.1): it should be 2"
lie "a lying tp" 's/"tp": 1,/"tp": 1000000000,/' \
  "layout.tp 1000000000 is out of range: it should be in [1, 2] (world_size)"
lie "a lying world_size" 's/"world_size": 2/"world_size": 1000000000/' \
  "world_size 1000000000, but '$tmp/lie-"
lie "a negative optimizer.steps" 's/"steps": 20/"steps": -5/' \
  "optimizer.steps -5 is out of range: it should be in [0, 20] (0 to step)"
# A --checkpoint-dir no save could write: refused before step 1, not after
# the training.
echo x >"$tmp/a-file"
for dir in "$tmp/a-file" /proc/minispeed-ckpt; do
  out=$(timeout 60 ${MPIRUN:-mpirun --oversubscribe} -np 2 "$bin" train $common --steps 20 \
    --batch-size 4 --save-every 10 --checkpoint-dir "$dir" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qF "error: cannot save checkpoints in '$dir'" <<<"$out" &&
    ! grep -q '^step ' <<<"$out"; then
    ok "--checkpoint-dir $dir is refused before step 1"
  else
    bad "--checkpoint-dir $dir (exit $rc)"
    echo "$out" | tail -5 | sed 's/^/  /'
  fi
done
expect_error "--resume without --checkpoint-dir" \
  "error: --resume latest needs --checkpoint-dir DIR" --steps 20 --batch-size 4 --resume latest

echo "checkpoints: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
