#!/usr/bin/env bash
# `minispeed train --config`: every configs/*.json trains a few steps at its
# rank count (a small model; --steps overrides nothing the file gives), the
# example program (examples/engine_train.cpp) runs, and bad input ends with
# the exact one-line error: a flag contradicting a key, a misspelled key, the
# batch triple that does not multiply out (naming where dp came from).
#   scripts/test-configs.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: scripts/test-configs.sh BUILD_DIR}
bin=$build/minispeed
mpirun=${MPIRUN:-mpirun --oversubscribe}
export MS_COMM_TIMEOUT=${MS_COMM_TIMEOUT:-30} ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
small=(--n-layer 4 --n-head 4 --n-embd 32 --seq-len 32 --steps 3 --eval-every 0 --sample-tokens 0)
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAILED: $1"; sed 's/^/    /' "$tmp/out" | grep -v '^    --' | head -n 8; fail=$((fail + 1)); }
run() {  # run RANKS ARGS...: minispeed (or another binary, "-b BIN") at RANKS ranks, into $tmp/out
  local ranks=$1 b=$bin
  shift
  if [ "$1" = -b ]; then b=$2; shift 2; fi
  if [ "$ranks" = 1 ]; then timeout 60 "$b" "$@" > "$tmp/out" 2>&1
  else timeout 60 $mpirun -np "$ranks" "$b" "$@" > "$tmp/out" 2>&1; fi
}

# ---- every example config trains ----
# The ranks each file runs at: its tensor_parallel.size × pipeline.stages × dp.
declare -A ranks=([dp_zero2.json]=2 [tp_sp.json]=2 [pp_1f1b.json]=2 [3d.json]=4 [bf16.json]=2 [fp16.json]=2
                  [cp_zigzag.json]=2 [moe.json]=2)
# What a config must visibly turn on, beyond training (the line rank 0 prints).
declare -A shows=([bf16.json]="mixed precision: bf16" [fp16.json]="mixed precision: f16"
                  [tp_sp.json]="tensor parallel: tp 2 + sequence parallel"
                  [cp_zigzag.json]="context parallel: cp 2, zigzag attention"
                  [moe.json]="mixture of experts: 4 experts, top-2")
for f in configs/*.json; do
  name=$(basename "$f")
  n=${ranks[$name]:-}
  if [ -z "$n" ]; then
    echo "FAILED: $f has no rank count in scripts/test-configs.sh"
    fail=$((fail + 1))
    continue
  fi
  run "$n" train --config "$f" "${small[@]}"
  rc=$?
  cp "$tmp/out" "$tmp/$name.out"
  if [ -n "${shows[$name]:-}" ] && ! grep -qF "${shows[$name]}" "$tmp/out"; then
    bad "$f at $n rank(s): no '${shows[$name]}' line (exit $rc)"
  elif [ $rc -eq 0 ] && grep -q "^$f, resolved for" "$tmp/out" && grep -q '^trained 3 steps' "$tmp/out" &&
    grep -E '^step +3/3 \| loss [0-9]+\.[0-9]+ ' "$tmp/out" > /dev/null; then
    ok "$f trains at $n rank(s)"
  else
    bad "$f at $n rank(s) (exit $rc)"
  fi
done

# ---- the example program: the article's question, answered ----
run 2 -b "$build/examples/engine_train" examples/ds_config.json 3
if [ $? -eq 0 ] && grep -q '^trained 3 steps with adamw (WarmupLR)' "$tmp/out"; then
  ok "examples/engine_train runs examples/ds_config.json on 2 ranks"
else
  bad "examples/engine_train"
fi

# ---- flags beside a config ----
run 1 train --config configs/dp_zero2.json "${small[@]}" --zero-stage 2 --lr 0.001 --beta2 0.95 --tp 1
if [ $? -eq 0 ] && grep -q '^trained 3 steps' "$tmp/out"; then
  ok "flags that agree with the config are fine"
else
  bad "flags that agree with the config"
fi

# ---- the file's keys drive the training the flags would ----
# A config and the flags that say the same must train the same: identical
# step lines (times cut) and byte-identical saved weights.
cat > "$tmp/map.json" <<'JSON'
{ "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2,
  "optimizer": { "type": "AdamW", "params": { "lr": 3e-3, "betas": [0.9, 0.95], "weight_decay": 0.1 } },
  "gradient_clipping": 0.5, "zero_optimization": { "stage": 1 } }
JSON
steps() { grep -E '^step ' "$tmp/out" | sed -E 's/ \| +[0-9.]+ ms.*//'; }
run 2 train --config "$tmp/map.json" "${small[@]}" --save-weights "$tmp/a.safetensors"
a=$(steps)
run 2 train "${small[@]}" --batch-size 4 --grad-accum 2 --lr 3e-3 --beta1 0.9 --beta2 0.95 \
  --weight-decay 0.1 --grad-clip 0.5 --zero-stage 1 --schedule constant --save-weights "$tmp/b.safetensors"
b=$(steps)
if [ -n "$a" ] && [ "$a" = "$b" ] && cmp -s "$tmp/a.safetensors" "$tmp/b.safetensors"; then
  ok "a config trains exactly like the flags that say the same (2 ranks, ZeRO-1, gas 2)"
else
  echo "$a" > "$tmp/out"; echo "--- flags:" >> "$tmp/out"; echo "$b" >> "$tmp/out"
  bad "a config and the equivalent flags train differently"
fi
cp "$tmp/pp_1f1b.json.out" "$tmp/out"  # from the run above
if grep -qF 'pipeline parallel: pp 2, 1f1b schedule, 8 micro-batches per step' "$tmp/out" &&
  grep -qF 'batch 4×32 tokens per replica × 8 micro-steps × 1 replicas' "$tmp/out" &&
  grep -qF 'adamw, lr 0.001 (WarmupDecayLR)' "$tmp/out" && grep -qF 'ZeRO stage 1' "$tmp/out"; then
  ok "configs/pp_1f1b.json sets the pipeline, the batch, the optimizer, the scheduler and ZeRO"
else
  bad "configs/pp_1f1b.json's keys did not reach the training"
fi

# exact NAME RANKS EXPECTED ARGS...: exits non-zero; the first `error:` line is EXPECTED exactly.
exact() {
  local name=$1 n=$2 want=$3 got
  shift 3
  run "$n" "$@"
  local rc=$?
  got=$(grep -m1 '^error: ' "$tmp/out")
  if [ $rc -ne 0 ] && [ "$got" = "$want" ]; then
    ok "$name"
  else
    bad "$name: exit $rc; expected exactly: $want"
  fi
}
exact "a flag contradicting a key names both" 1 \
  "error: --zero-stage 1 contradicts zero_optimization.stage 2 in configs/dp_zero2.json" \
  train --config configs/dp_zero2.json "${small[@]}" --zero-stage 1
# A batch flag the file leaves out joins it before DeepSpeed's derivation.
exact "--grad-accum joins the file's batch triple" 1 \
  "error: configs/dp_zero2.json: Check batch related parameters. train_batch_size is not equal to micro_batch_per_gpu * gradient_acc_step * world_size 32 != 8 * 2 * 1 [train_batch_size given; train_micro_batch_size_per_gpu given; gradient_accumulation_steps given; world_size is the data-parallel size 1 = 1 ranks / (tensor_parallel.size 1 × pipeline.stages 1)] (from the command line: gradient_accumulation_steps = --grad-accum 2)" \
  train --config configs/dp_zero2.json "${small[@]}" --grad-accum 2
exact "minispeed's schedule flags beside the file's scheduler" 1 \
  "error: --warmup 5 contradicts scheduler.type WarmupCosineLR in configs/dp_zero2.json (the file's scheduler sets the learning rate of every step)" \
  train --config configs/dp_zero2.json "${small[@]}" --warmup 5
echo '{"train_batch_size": 8, "gradient_clipp1ng": 1.0}' > "$tmp/typo.json"
exact "an unknown key gets a did-you-mean" 1 \
  "error: $tmp/typo.json: unknown key \"gradient_clipp1ng\" at gradient_clipp1ng; did you mean \"gradient_clipping\"? (valid keys: activation_checkpointing, bf16, bfloat16, communication_data_type, context_parallel, device, fp16, gradient_accumulation_steps, gradient_clipping, moe, optimizer, pipeline, scheduler, sequence_parallel_size, steps_per_print, tensor_parallel, train_batch_size, train_micro_batch_size_per_gpu, zero_optimization)" \
  train --config "$tmp/typo.json" "${small[@]}"
echo '{"train_batch_size": 32, "train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 1}' \
  > "$tmp/batch.json"
exact "the batch triple, with where dp came from (--tp joins the file)" 4 \
  "error: $tmp/batch.json: Check batch related parameters. train_batch_size is not equal to micro_batch_per_gpu * gradient_acc_step * world_size 32 != 8 * 1 * 2 [train_batch_size given; train_micro_batch_size_per_gpu given; gradient_accumulation_steps given; world_size is the data-parallel size 2 = 4 ranks / (tensor_parallel.size 2 × pipeline.stages 1)] (from the command line: tensor_parallel.size = --tp 2) (on rank 0 and 3 other rank(s))" \
  train --config "$tmp/batch.json" "${small[@]}" --tp 2
exact "bf16 with tensor parallelism is refused in the file's words" 2 \
  "error: configs/bf16.json: bf16.enabled true with tensor_parallel.size 2 is not supported yet (16-bit training runs with data parallelism and ZeRO 0-3) (on rank 0 and 1 other rank(s))" \
  train --config configs/bf16.json "${small[@]}" --tp 2
exact "--fp16 beside a bf16 config names both" 1 \
  "error: --fp16 contradicts bf16.enabled true in configs/bf16.json (bfloat16 and fp16 modes cannot be simultaneously enabled)" \
  train --config configs/bf16.json "${small[@]}" --fp16
exact "a missing file" 1 "error: ds_config: no such file '$tmp/none.json'" \
  train --config "$tmp/none.json" "${small[@]}"
# read_train_config once read --sequence-parallel after the --pp check that
# refuses it: the run then crashed in a pipeline recv of the wrong size.
exact "--sequence-parallel with --pp is refused" 4 \
  "error: --sequence-parallel with --pp 2 is not supported yet (planned): the activations between stages would be (B, T / --tp, C)" \
  train "${small[@]}" --batch-size 2 --tp 2 --pp 2 --sequence-parallel

# The same --config path holding different files on different machines
# (here: two working directories) must stop before any training collective.
mkdir -p "$tmp/m1" "$tmp/m2"
echo '{"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 1}}' > "$tmp/m1/c.json"
echo '{"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 2}}' > "$tmp/m2/c.json"
args=(train --config c.json --data "$PWD/data/tinyshakespeare.txt" "${small[@]}")
timeout 60 $mpirun -np 1 -wdir "$tmp/m1" "$PWD/$bin" "${args[@]}" : -np 1 -wdir "$tmp/m2" "$PWD/$bin" \
  "${args[@]}" > "$tmp/out" 2>&1
want="error: ranks disagree on --zero-stage: 1 on rank 0, 2 on rank 1 (start every rank with the same command and flags)"
if [ "$(grep -m1 '^error: ' "$tmp/out")" = "$want" ]; then
  ok "one --config path, different files on different ranks: stopped, naming the key's flag"
else
  bad "different files behind one --config path; expected exactly: $want"
fi

echo "configs: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
