#!/usr/bin/env bash
# The bad-input matrix: `minispeed` given bad flags, values, files or ranks
# that disagree must END within seconds, with a one-line error naming the
# problem, and a non-zero exit on every rank — never a hang, a crash, a NaN
# model saved with exit 0, or an OOM kill minutes later.
#   scripts/test-bad-input.sh BUILD_DIR
# Each case prints `ok: ...` or `FAIL: ...`; the last line is
# `bad input: N passed, M failed`. Runs from the repository root (for
# data/tinyshakespeare.txt) under the environment `make mpi-test` sets.
set -uo pipefail
build=${1:?usage: scripts/test-bad-input.sh BUILD_DIR}
bin=$build/minispeed
mpirun=${MPIRUN:-mpirun --oversubscribe}
limit=10  # seconds per case; `timeout` exits 124 when one runs over
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Minispeed under ASan or mpirun: leak reports from Open MPI's plugins are not
# ours (see the Makefile).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}

# A tiny model that trains in milliseconds, so every case is about its input.
tiny=(--n-layer 1 --n-head 2 --n-embd 16 --seq-len 8 --batch-size 2 --steps 2 --eval-every 0
  --sample-tokens 0)

wrap=()  # a command that starts minispeed (e.g. under ulimit); none by default

verdict() {  # verdict NAME PROBLEM ("" = ok)
  if [ -z "$2" ]; then
    echo "ok: $1"
    pass=$((pass + 1))
  else
    echo "FAIL: $1: $2"
    sed 's/^/    /' "$tmp/err" | head -n 20
    fail=$((fail + 1))
  fi
}

# one NAME EXPECTED_TEXT ARGS...: one process; stderr must be exactly one line
# `error: ...` containing EXPECTED_TEXT, the exit code 1, and no "wrote".
one() {
  local name=$1 want=$2 rc problem=""
  shift 2
  timeout $limit "${wrap[@]}" "$bin" "$@" > "$tmp/out" 2> "$tmp/err"
  rc=$?
  if [ "$rc" -eq 124 ]; then
    problem="still running after $limit s"
  elif [ "$rc" -ne 1 ]; then
    problem="exit code $rc, expected 1"
  elif [ "$(wc -l < "$tmp/err")" -ne 1 ] || ! head -n 1 "$tmp/err" | grep -q '^error: '; then
    problem="stderr is not one line 'error: ...'"
  elif ! grep -qF -- "$want" "$tmp/err"; then
    problem="the error lacks '$want'"
  elif grep -q '^wrote' "$tmp/out"; then
    problem="printed 'wrote' although it failed"
  fi
  verdict "$name" "$problem"
}

# ranks NAME EXPECTED_TEXT ARGS_RANK0 -- ARGS_RANK1: two ranks via mpirun's
# MPMD form (`A : B`), each wrapped to report its own exit code. Every rank
# must exit non-zero (or be ended by the job's abort), and the job must print
# exactly one error line containing EXPECTED_TEXT.
ranks() {
  local name=$1 want=$2 a=() b=() rc problem="" codes
  shift 2
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do a+=("$1"); shift; done
  shift
  b=("$@")
  local wrap='"$0" "$@"; rc=$?; echo "rank exit $rc" >&2; exit $rc'
  timeout $limit $mpirun -np 1 bash -c "$wrap" "$bin" "${a[@]}" : \
    -np 1 bash -c "$wrap" "$bin" "${b[@]}" > "$tmp/out" 2> "$tmp/err"
  rc=$?
  codes=$(grep -o 'rank exit [0-9]*' "$tmp/err" | awk '{print $3}' | tr '\n' ' ')
  if [ "$rc" -eq 124 ]; then
    problem="still running after $limit s (hang)"
  elif [ "$rc" -eq 0 ]; then
    problem="mpirun exited 0"
  elif echo " $codes" | grep -q ' 0 '; then
    problem="a rank exited 0 (rank exit codes: $codes)"
  elif [ "$(grep -cE '^(\[rank [0-9]+\] )?error: ' "$tmp/err")" -ne 1 ]; then
    problem="expected exactly one error line"
  elif ! grep -E '^(\[rank [0-9]+\] )?error: ' "$tmp/err" | grep -qF -- "$want"; then
    problem="the error lacks '$want'"
  fi
  verdict "$name" "$problem"
}

# job NAME EXPECTED_TEXT NP ARGS...: NP ranks started alike (the same flags on
# every rank); the same verdict as ranks() — every rank exits non-zero within
# the limit and the job prints exactly one error line containing EXPECTED_TEXT.
job() {
  local name=$1 want=$2 np=$3 rc problem="" codes
  shift 3
  local wrap='"$0" "$@"; rc=$?; echo "rank exit $rc" >&2; exit $rc'
  timeout $limit $mpirun -np "$np" bash -c "$wrap" "$bin" "$@" > "$tmp/out" 2> "$tmp/err"
  rc=$?
  codes=$(grep -o 'rank exit [0-9]*' "$tmp/err" | awk '{print $3}' | tr '\n' ' ')
  if [ "$rc" -eq 124 ]; then
    problem="still running after $limit s (hang)"
  elif [ "$rc" -eq 0 ]; then
    problem="mpirun exited 0"
  elif echo " $codes" | grep -q ' 0 '; then
    problem="a rank exited 0 (rank exit codes: $codes)"
  elif [ "$(grep -cE '^(\[rank [0-9]+\] )?error: ' "$tmp/err")" -ne 1 ]; then
    problem="expected exactly one error line"
  elif ! grep -E '^(\[rank [0-9]+\] )?error: ' "$tmp/err" | grep -qF -- "$want"; then
    problem="the error lacks '$want'"
  fi
  verdict "$name" "$problem"
}

# ---- values out of range ----
one "--lr nan" "--lr must be a finite number >= 0, got nan" train "${tiny[@]}" --lr nan
one "--lr inf" "--lr must be a finite number >= 0, got inf" train "${tiny[@]}" --lr inf
one "--lr -1" "--lr must be a finite number >= 0, got -1" train "${tiny[@]}" --lr -1
one "--min-lr nan" "--min-lr must be in [0, --lr]" train "${tiny[@]}" --min-lr nan
one "--min-lr above --lr" "--min-lr must be in [0, --lr]" train "${tiny[@]}" --lr 1e-3 --min-lr 1
one "--momentum -0.5" "--momentum must be in [0, 1), got -0.5" train "${tiny[@]}" --momentum -0.5
one "--weight-decay nan" "--weight-decay must be a finite number >= 0, got nan" \
  train "${tiny[@]}" --weight-decay nan
one "--beta1 1" "--beta1 must be in [0, 1), got 1" train "${tiny[@]}" --beta1 1
one "--beta2 inf" "--beta2 must be in [0, 1), got inf" train "${tiny[@]}" --beta2 inf
one "--grad-clip -1" "--grad-clip must be a finite number >= 0" train "${tiny[@]}" --grad-clip -1
one "--dropout 1" "--dropout must be in [0, 1), got 1" train "${tiny[@]}" --dropout 1
one "--warmup -1" "--warmup must be in [0, --steps]" train "${tiny[@]}" --warmup -1
one "--eval-batches 0" "--eval-batches must be at least 1" train "${tiny[@]}" --eval-batches 0
one "--eval-batches -1" "--eval-batches must be at least 1" train "${tiny[@]}" --eval-batches -1
one "--log-every 0" "--log-every must be positive" train "${tiny[@]}" --log-every 0
one "--zero-stage 4" "--zero-stage must be 0, 1, 2 or 3, got 4" train "${tiny[@]}" --zero-stage 4
one "--zero-stage -1" "--zero-stage must be 0, 1, 2 or 3, got -1" train "${tiny[@]}" --zero-stage -1
one "--zero-stage two" "--zero-stage must be an integer, got 'two'" train "${tiny[@]}" --zero-stage two
one "--n-embd not a multiple of --n-head" "must be a positive multiple of --n-head" \
  train "${tiny[@]}" --n-embd 30 --n-head 4
one "--n-layer 0" "--n-layer must be positive" train "${tiny[@]}" --n-layer 0
one "a loss that turns NaN stops training" "training diverged: the loss is" \
  train "${tiny[@]}" --steps 5 --lr 1e30

# ---- invalid flags ----
one "unknown flag" "unknown flag --bogus" train --bogus 1
one "misspelt flag" "did you mean --batch-size?" train --batch-szie 2
one "flag without a value" "--batch-size needs a value" train --batch-size
one "not a number" "--steps must be an integer, got 'many'" train --steps many
one "unknown command" "unknown command 'frobnicate'" frobnicate

# ---- products that overflow int64 ----
one "B·T overflows" "--batch-size × --seq-len = 4611686018427387904 × 4" \
  train "${tiny[@]}" --batch-size 4611686018427387904 --seq-len 4
one "B·T·grad-accum overflows" "tokens per optimizer step" \
  train "${tiny[@]}" --batch-size 4294967296 --seq-len 4 --grad-accum 4294967296
one "steps·grad-accum overflows" "--steps × --grad-accum × ranks" \
  train "${tiny[@]}" --steps 4611686018427387904 --grad-accum 4
one "n_layer·n_embd² overflows" "parameters of the model" \
  train "${tiny[@]}" --n-layer 4611686018427387904 --n-embd 1024 --n-head 1
one "estimate-memory: bytes of a huge --params" "--params 9223372036854775807 is too large" \
  estimate-memory --params 9223372036854775807

# ---- memory ----
one "a model that cannot fit is refused up front" "the model does not fit in memory" \
  train "${tiny[@]}" --n-layer 100 --n-embd 1000000 --n-head 1
# One process out of memory: say so plainly, without MPI_Abort's banner. Under
# a 1 GB address-space limit, one batch of 150000 × 1000 tokens (1.2 GB of
# inputs and targets) from a sparse 200 MB file cannot be allocated.
if ldd "$bin" 2> /dev/null | grep -q libasan; then
  echo "skip: one process out of memory (ASan reserves more address space than the limit)"
else
  truncate -s 200M "$tmp/big.bin"
  wrap=(bash -c 'ulimit -v 1000000 && exec "$0" "$@"')
  one "one process out of memory" "error: out of memory (std::bad_alloc) while training step 1" \
    train "${tiny[@]}" --seq-len 1000 --batch-size 150000 --data "$tmp/big.bin"
  wrap=()
  rm -f "$tmp/big.bin"
fi

# ---- files ----
: > "$tmp/empty.txt"
head -c 4096 /dev/urandom > "$tmp/garbage.bin"
mkfifo "$tmp/fifo"
one "missing --data" "--data: cannot open '/no/such/file'" train "${tiny[@]}" --data /no/such/file
one "empty --data" "is empty" train "${tiny[@]}" --data "$tmp/empty.txt"
one "--data /dev/zero" "--data: '/dev/zero' is not a regular file" train "${tiny[@]}" --data /dev/zero
one "--data is a FIFO" "is not a regular file" train "${tiny[@]}" --data "$tmp/fifo"
one "--data is a directory" "is not a regular file" train "${tiny[@]}" --data "$tmp"
one "missing --init-from" "/no/such.safetensors" train "${tiny[@]}" --init-from /no/such.safetensors
one "garbage --init-from" "$tmp/garbage.bin" train "${tiny[@]}" --init-from "$tmp/garbage.bin"
# The weights go through; the loss curve beside them does not. RLIMIT_FSIZE
# (ulimit -f, KiB) makes writes past it fail with EFBIG, as a full disk fails
# with ENOSPC; PMIx keeps its store in memory, not in files the limit breaks.
micro=(--n-layer 1 --n-head 1 --n-embd 4 --seq-len 4 --batch-size 1 --eval-batches 1
  --sample-tokens 0 --log-every 1000 --save-weights "$tmp/full/run.safetensors")
mkdir -p "$tmp/full"
export PMIX_MCA_gds=hash
# The limit also reaches Open MPI's helper daemon, which reports the signal on
# stderr ("Forwarding signal 25 to job"); that line is not minispeed's.
# bash -c "$limited" KIB PROGRAM ARGS...; --log-every keeps stdout (a file
# here, so also limited) far below the limit.
limited='trap "" XFSZ; ulimit -f "$0" || exit
{ "$@" 2>&1 1>&3 | grep -v "Forwarding signal 25" >&2; exit ${PIPESTATUS[0]}; } 3>&1'
wrap=(bash -c "$limited" 10)  # KiB: ~6 KB of weights fit, the ~15 KB .csv does not
one "loss curve (.csv) cannot be written" "writing the loss curve to '$tmp/full/run.loss.csv' failed" \
  train "${micro[@]}" --steps 600 --eval-every 0
wrap=(bash -c "$limited" 20)  # ~13 KB .csv fits, the ~29 KB .svg does not
one "loss chart (.svg) cannot be written" "writing the loss chart to '$tmp/full/run.loss.svg' failed" \
  train "${micro[@]}" --steps 400 --eval-every 1
problem=""
[ -e "$tmp/full/run.loss.svg" ] && problem="a $(wc -c < "$tmp/full/run.loss.svg")-byte .loss.svg was left"
[ -s "$tmp/full/run.safetensors" ] || problem="the weights were not saved"
verdict "a failed .svg leaves no partial file, and the weights" "$problem"
wrap=()
# Under mpirun the ranks do not inherit the shell's ignored SIGXFSZ: minispeed
# ignores it itself, so a save past the limit is an error naming the file, not
# a rank killed by signal 25 with nothing said. ~8 KB of weights, 6 KiB limit.
rm -rf "$tmp/full" && mkdir -p "$tmp/full"
timeout 60 bash -c 'ulimit -f 6 && exec "$@"' limited $mpirun -np 2 "$bin" train "${micro[@]}" \
  --n-layer 2 --pp 2 --steps 2 --eval-every 0 > "$tmp/out" 2> "$tmp/err"
rc=$?
problem=""
if [ "$rc" -eq 0 ]; then problem="exit code 0"
elif grep -q 'exited on signal 25' "$tmp/err"; then problem="a rank was killed by SIGXFSZ"
elif ! grep -qE "^\[rank 0\] error: .*$tmp/full/run.safetensors.*File too large" "$tmp/err"; then
  problem="no error naming the weights file and 'File too large'"
fi
verdict "2 ranks: weights past the file-size limit" "$problem"
unset PMIX_MCA_gds
rm -rf "$tmp/full"
# A device as the save target (the reviewer's `--save-weights /dev/null` as
# root turned /dev/null into a regular file). A private copy of the null device
# stands in for /dev/null, so a broken build cannot damage the machine's; where
# mknod is not allowed, a FIFO (also not a regular file) stands in.
if mknod "$tmp/nulldev" c 1 3 2> /dev/null; then kind="character device"; else
  mkfifo "$tmp/nulldev"; kind="FIFO"; fi
one "--save-weights on a $kind" "$tmp/nulldev" train "${tiny[@]}" --save-weights "$tmp/nulldev"
problem=""
[ -c "$tmp/nulldev" ] || [ -p "$tmp/nulldev" ] || problem="the $kind was replaced by a regular file"
ls "$tmp"/nulldev.loss.* > /dev/null 2>&1 && problem="a loss curve was written beside the $kind"
verdict "the $kind is left as it was" "$problem"

# ---- ds_config files (an attacker's and a confused user's) ----
# 100,000 levels of nesting crashed the error message's dump (SIGSEGV).
printf '{"train_batch_size": %s%s}' "$(head -c 100000 /dev/zero | tr '\0' '[')" \
  "$(head -c 100000 /dev/zero | tr '\0' ']')" > "$tmp/deep.json"
one "ds_config nested 100,000 deep" "JSON nested more than 64 deep at train_batch_size[0]" \
  train "${tiny[@]}" --config "$tmp/deep.json"
# A value of 400,000 elements (800 KB, under the 1 MiB limit) is quoted in
# 60 characters, not in full.
{ printf '{"train_batch_size": [1'; head -c 400000 /dev/zero | tr '\0' '1' | sed 's/1/,1/g'
  printf ']}'; } > "$tmp/wide.json"
one "ds_config with a huge value" "train_batch_size must be an integer, got [1, 1, 1" \
  train "${tiny[@]}" --config "$tmp/wide.json"
problem=""
[ "$(wc -c < "$tmp/err")" -lt 300 ] || problem="the error is $(wc -c < "$tmp/err") bytes"
verdict "the huge value's error is short" "$problem"
truncate -s 2G "$tmp/huge.json"
one "--config a 2 GB file" "is 2147483648 bytes; a configuration is a few KB" \
  train "${tiny[@]}" --config "$tmp/huge.json"
rm -f "$tmp/huge.json" "$tmp/wide.json" "$tmp/deep.json"
one "--config /dev/zero" "is not a regular file" train "${tiny[@]}" --config /dev/zero
one "--config is a FIFO" "is not a regular file" train "${tiny[@]}" --config "$tmp/fifo"
# lr 0 is valid (torch.optim and DeepSpeed accept it: evaluation-only runs);
# a negative one is not, in the file as on the command line.
echo '{"train_batch_size": 2, "optimizer": {"type": "AdamW", "params": {"lr": -1e-3}}}' \
  > "$tmp/neg_lr.json"
one "ds_config lr -1e-3" "optimizer.params.lr must be a finite number >= 0, got -0.001" \
  train "${tiny[@]}" --config "$tmp/neg_lr.json"
one "--lr -1e-300 (barely negative)" "--lr must be a finite number >= 0" train "${tiny[@]}" --lr -1e-300
timeout $limit "$bin" train "${tiny[@]}" --lr 0 > "$tmp/out" 2> "$tmp/err"
rc=$?
verdict "--lr 0 trains (evaluation-only runs use it)" "$([ $rc -eq 0 ] || echo "exit code $rc")"

# ---- output paths: refused before step 1, not at the first save ----
# before_step1 NAME: the last case must not have trained (no step line).
before_step1() {
  verdict "$1: refused before step 1" "$(grep -q '^step' "$tmp/out" && echo "it trained first")"
}
: > "$tmp/a_file"
one "--save-weights under /proc" "--save-weights: cannot save to '/proc/ms_weights.safetensors'" \
  train "${tiny[@]}" --save-weights /proc/ms_weights.safetensors
before_step1 "--save-weights under /proc"
one "--save-weights inside a file" "parent '$tmp/a_file' is a regular file, not a directory" \
  train "${tiny[@]}" --save-weights "$tmp/a_file/w.safetensors"
one "--save-weights is a directory" "is a directory" train "${tiny[@]}" --save-weights "$tmp"
# A confused user: the weights saved over the training data (or the config).
cp data/tinyshakespeare.txt "$tmp/corpus.txt"
one "--save-weights is the --data file" "--save-weights: '$tmp/corpus.txt' is the --data file" \
  train "${tiny[@]}" --data "$tmp/corpus.txt" --save-weights "$tmp/corpus.txt"
problem=""
cmp -s data/tinyshakespeare.txt "$tmp/corpus.txt" || problem="the data file was changed"
verdict "the --data file is left as it was" "$problem"
ln -s corpus.txt "$tmp/corpus_link.txt"
one "--save-weights is the --data file, through a link" "is the --data file '$tmp/corpus_link.txt'" \
  train "${tiny[@]}" --data "$tmp/corpus_link.txt" --save-weights "$tmp/corpus.txt"
echo '{"train_batch_size": 2}' > "$tmp/ds.json"
one "--save-weights is the --config file" "is the --config file" \
  train "${tiny[@]}" --config "$tmp/ds.json" --save-weights "$tmp/ds.json"
one "schedule --svg under /proc" "--svg: cannot save to '/proc/ms_schedule.svg'" \
  schedule --pp 2 --micro-batches 4 --svg /proc/ms_schedule.svg
job "--timeline under /proc" "--timeline: cannot save to '/proc/ms_timeline.svg'" 2 \
  train "${tiny[@]}" --n-layer 2 --pp 2 --timeline /proc/ms_timeline.svg
before_step1 "--timeline under /proc"
job "--timeline inside a file" "--timeline: cannot save to '$tmp/a_file/t.svg'" 2 \
  train "${tiny[@]}" --n-layer 2 --pp 2 --timeline "$tmp/a_file/t.svg"
# The precious output first: a timeline whose directory vanished during the
# run (a user cleaning up) fails after the weights are written, not before.
mkdir -p "$tmp/tl" "$tmp/run"
OMP_NUM_THREADS=1 timeout 120 $mpirun -np 2 "$bin" train "${tiny[@]}" --n-layer 2 --pp 2 \
  --steps 1000 --log-every 1 --timeline "$tmp/tl/t.svg" --save-weights "$tmp/run/w.safetensors" \
  > "$tmp/out" 2> "$tmp/err" &
victim=$!
for _ in $(seq 450); do grep -q '^step' "$tmp/out" && break; sleep 0.2; done
rm -rf "$tmp/tl"  # ~5 s of training are left
wait "$victim"
rc=$?
problem=""
if [ "$rc" -eq 0 ]; then problem="exit code 0"
elif ! grep -q 'error: --timeline' "$tmp/err"; then problem="no --timeline error"
elif [ ! -s "$tmp/run/w.safetensors" ]; then problem="the weights were not saved"
fi
verdict "a timeline that fails at the end does not cost the weights" "$problem"

# ---- a running job ----
# --data truncated under a running job: it was mapped, and the next read of
# a vanished page killed the rank with SIGBUS. Now one error names the file.
cp data/tinyshakespeare.txt "$tmp/shrinks.txt"
OMP_NUM_THREADS=1 timeout 120 $mpirun -np 2 "$bin" train "${tiny[@]}" --steps 100000 \
  --log-every 1 --data "$tmp/shrinks.txt" > "$tmp/out" 2> "$tmp/err" &
victim=$!
for _ in $(seq 450); do grep -q '^step' "$tmp/out" && break; sleep 0.2; done
truncate -s 100 "$tmp/shrinks.txt"
wait "$victim"
rc=$?
problem=""
if [ "$rc" -eq 124 ]; then problem="still running after 120 s"
elif [ "$rc" -eq 0 ]; then problem="exit code 0"
elif grep -qi 'bus error\|signal 7' "$tmp/err"; then problem="SIGBUS"
elif ! grep -qE '^\[rank [0-9]+\] error: ' "$tmp/err"; then
  problem="no error line naming a rank"
# Each rank reads its own batches, so each rank that reached the truncated
# bytes says so itself, naming itself: every error line is this one.
elif grep -E '^(\[rank [0-9]+\] )?error: ' "$tmp/err" | grep -vqE "^\[rank [0-9]+\] error: --data: the data file '$tmp/shrinks.txt' was truncated while training \(was [0-9]+ bytes, now 100 bytes\)$"; then
  problem="an error line does not name the rank, the file and both sizes"
fi
verdict "--data truncated while training" "$problem"
# ps, pgrep and pkill know the program by the name of the file it executed:
# `minispeed`, not `exe` (it once re-executed itself through /proc/self/exe).
env "MS_PS_TAG=$tmp" OMP_NUM_THREADS=1 timeout 60 "$bin" train "${tiny[@]}" --steps 100000 \
  --log-every 1 > "$tmp/out" 2> "$tmp/err" &
victim=$!
for _ in $(seq 450); do grep -q '^step' "$tmp/out" && break; sleep 0.2; done
# Ours: the process that runs "$bin train" with this run's tag in its environment.
name=""
for pid in /proc/[0-9]*; do
  case "$(tr '\0' ' ' 2> /dev/null < "$pid/cmdline")" in "$bin train "*) ;; *) continue ;; esac
  tr '\0' '\n' 2> /dev/null < "$pid/environ" | grep -qxF "MS_PS_TAG=$tmp" &&
    name=$(cat 2> /dev/null < "$pid/comm")
done
kill "$victim" 2> /dev/null
wait "$victim" 2> /dev/null
verdict "ps names the process minispeed" "$([ "$name" = minispeed ] || echo "its name is '$name'")"

# ---- ranks that disagree (mpirun -np 1 A : -np 1 B) ----
for flag in "n-embd 32" "n-layer 2" "zero-stage 1" "steps 3" "n-head 4" "lr 2e-3" "grad-accum 2"; do
  set -- $flag
  ranks "ranks disagree on --$1" "ranks disagree on --$1: " \
    train "${tiny[@]}" -- train "${tiny[@]}" "--$1" "$2"
done
ranks "ranks disagree on the command" "ranks disagree on the command: train on rank 0, sample" \
  train "${tiny[@]}" -- sample --weights /no/such.safetensors
# Agreed flags that are bad: every rank reaches the same verdict and exits 1.
ranks "2 ranks: --lr nan" "--lr must be a finite number >= 0, got nan" \
  train "${tiny[@]}" --lr nan -- train "${tiny[@]}" --lr nan
ranks "2 ranks: a loss that turns NaN" "training diverged" \
  train "${tiny[@]}" --steps 5 --lr 1e30 -- train "${tiny[@]}" --steps 5 --lr 1e30
ranks "2 ranks: a missing --data" "(on rank 0 and 1 other rank(s))" \
  train "${tiny[@]}" --data /no/such/file -- train "${tiny[@]}" --data /no/such/file


# ---- tensor parallelism (--tp, --sequence-parallel) ----
one "--tp 0" "--tp must be positive, got 0" train "${tiny[@]}" --tp 0
one "--tp 2 on one process" "--tp 2 does not divide the 1 ranks" train "${tiny[@]}" --tp 2
# An error, not a no-op: a flag that silently does nothing misleads.
one "--sequence-parallel without --tp" "--sequence-parallel needs --tp > 1" \
  train "${tiny[@]}" --sequence-parallel
one "--sequence-parallel=maybe" "switch --sequence-parallel takes no value" \
  train "${tiny[@]}" --sequence-parallel=maybe
job "--tp 3 on 4 ranks" "--tp 3 does not divide the 4 ranks" 4 train "${tiny[@]}" --tp 3
job "--tp 3 on 3 ranks: the vocabulary" "--tp 3 does not divide the vocabulary of 256 bytes" 3 \
  train "${tiny[@]}" --tp 3 --n-head 3 --n-embd 12
job "--n-head not divisible by --tp" "--n-head 1 is not divisible by --tp 2" 2 \
  train "${tiny[@]}" --tp 2 --n-head 1
job "--sequence-parallel with --seq-len % --tp != 0" \
  "--sequence-parallel splits --seq-len 7 over --tp 2, which does not divide it" 2 \
  train "${tiny[@]}" --tp 2 --sequence-parallel --seq-len 7
# A planted bug (tensor/placement.h): the row-parallel all-reduce skipped. The
# placements name it on every rank instead of training on a wrong loss.
MS_PLANT_BUG=skip-row-parallel-all-reduce job "planted: a skipped row-parallel all-reduce" \
  "'h.0.attn.c_proj: row_parallel_linear output (before its all-reduce)' [1, 8, 16] [tp: partial(sum)] cannot be combined over tp" \
  2 train "${tiny[@]}" --tp 2
# A weights file whose heads do not split over --tp.
timeout $limit "$bin" train "${tiny[@]}" --n-head 1 --save-weights "$tmp/one_head.safetensors" \
  > /dev/null 2>&1
# The heads come from the file: no --n-head here.
job "--tp with --init-from whose heads do not split" "has n_head 1, which --tp 2 does not divide" 2 \
  train --n-layer 1 --seq-len 8 --batch-size 2 --steps 2 --eval-every 0 --sample-tokens 0 --tp 2 \
  --init-from "$tmp/one_head.safetensors"

# ---- pipeline parallelism (--pp, --pipe-schedule, --virtual-stages) ----
one "--pp 0" "--pp must be positive, got 0" train "${tiny[@]}" --pp 0
one "--pipe-schedule foo" "unknown" train "${tiny[@]}" --pipe-schedule foo
one "--virtual-stages without interleaved" "--virtual-stages 2 needs --pipe-schedule interleaved" \
  train "${tiny[@]}" --virtual-stages 2
one "--timeline without --pp" "--timeline needs --pp > 1" train "${tiny[@]}" --timeline "$tmp/t.svg"
one "--virtual-stages without --pp" "--virtual-stages 2 needs --pp > 1" \
  train "${tiny[@]}" --pipe-schedule interleaved --virtual-stages 2
job "--pp 3 on 4 ranks" "--tp 1 × --pp 3 does not divide the 4 ranks" 4 train "${tiny[@]}" --pp 3
job "--tp 2 --pp 2 on 6 ranks" "--tp 2 × --pp 2 does not divide the 6 ranks" 6 \
  train "${tiny[@]}" --tp 2 --pp 2
job "--n-layer fewer than the stages" "--n-layer 1 is fewer than the 2 pipeline stages" 2 \
  train "${tiny[@]}" --pp 2
job "interleaved with --grad-accum % --pp != 0" \
  "--pipe-schedule interleaved needs --grad-accum (the micro-batches, 3) to be a multiple of --pp 2" \
  2 train "${tiny[@]}" --n-layer 4 --pp 2 --pipe-schedule interleaved --virtual-stages 2 \
  --grad-accum 3
job "--zero-stage 2 with --pp" "ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism" 2 \
  train "${tiny[@]}" --n-layer 2 --pp 2 --zero-stage 2
# The depth comes from the file (1 block): fewer than --pp 2 stages.
job "--pp with --init-from of fewer blocks" "has 1 blocks, fewer than the 2 pipeline stages" 2 \
  train --n-layer 1 --seq-len 8 --batch-size 2 --steps 2 --eval-every 0 --sample-tokens 0 --pp 2 \
  --init-from "$tmp/one_head.safetensors"

# ---- expert parallelism (--ep, ds_config moe.ep_size) ----
moe=("${tiny[@]}" --moe-every 1)
one "--ep 0" "--ep must be >= 1, got 0" train "${moe[@]}" --moe-experts 4 --ep 0
one "--ep without experts" "--ep 2 needs --moe-experts E >= 1" train "${tiny[@]}" --ep 2
job "--ep not dividing the experts" "--ep 2 does not divide --moe-experts 3" 2 \
  train "${moe[@]}" --moe-experts 3 --ep 2
job "--ep not dividing dp" "--ep 4 does not divide the data-parallel size 2" 2 \
  train "${moe[@]}" --moe-experts 4 --ep 4
job "--ep with --tp (refused)" "--moe-experts with --tp 2: MoE runs without tensor parallelism" 4 \
  train "${moe[@]}" --moe-experts 4 --ep 2 --tp 2
job "--ep × --tp not dividing the ranks" "--tp 2 does not divide the 3" 3 \
  train "${moe[@]}" --moe-experts 4 --ep 2 --tp 2
job "--ep with ZeRO-3" "ZeRO-3 with MoE is refused" 2 \
  train "${moe[@]}" --moe-experts 4 --ep 2 --zero-stage 3

# ---- context parallelism (--cp, --cp-algo, sequence_parallel_size) ----
one "--cp 0" "--cp must be positive, got 0" train "${tiny[@]}" --cp 0
one "--cp-algo foo" "--cp-algo: unknown algorithm 'foo' (valid: ulysses, ring, zigzag, allgather)" \
  train "${tiny[@]}" --cp-algo foo
job "--moe-experts with --cp" "--moe-experts with --cp 2: MoE runs without context parallelism" 2 \
  train "${tiny[@]}" --cp 2 --moe-experts 2 --moe-every 1
job "--cp with --device sim" "--cp 2 with --device sim is not supported yet" 2 \
  train "${tiny[@]}" --cp 2 --device sim
one "--moe-experts with --device sim" "--moe-experts with --device sim: MoE runs on the CPU only" \
  train "${tiny[@]}" --moe-experts 2 --moe-every 1 --device sim
job "--attn-dropout with --device sim" "--attn-dropout 0.1 with --device sim is not supported yet" 2 \
  train "${tiny[@]}" --attn-dropout 0.1 --device sim
job "--cp 2 on 3 ranks" "--cp 2 × --tp 1 × --pp 1 does not divide the 3 ranks" 3 \
  train "${tiny[@]}" --cp 2
job "--cp: heads not divisible by tp × cp (ulysses)" \
  "--cp-algo ulysses: --n-head 2 is not divisible by --tp 2 × --cp 2 = 4" 4 \
  train "${tiny[@]}" --cp 2 --tp 2
job "--cp with n_head 1 (ulysses)" "--cp 2 --cp-algo ulysses with --n-head 1: one head cannot" 2 \
  train "${tiny[@]}" --cp 2 --n-head 1
job "--cp: --seq-len not divisible" "--cp-algo ring splits --seq-len 7 into 2 chunks" 2 \
  train "${tiny[@]}" --cp 2 --cp-algo ring --seq-len 7
job "--cp zigzag: --seq-len not divisible by 2·cp" "--cp-algo zigzag splits --seq-len 6 into 4 chunks" \
  2 train "${tiny[@]}" --cp 2 --cp-algo zigzag --seq-len 6
job "--cp with --pp" "--cp 2 with --pp 2 is not supported" 4 \
  train "${tiny[@]}" --n-layer 2 --cp 2 --pp 2
printf '{"train_micro_batch_size_per_gpu": 2, "sequence_parallel_size": 2}' > "$tmp/cp2.json"
one "ds_config sequence_parallel_size not dividing the ranks" \
  "ranks are not divisible by tensor_parallel.size 1 × pipeline.stages 1 × sequence_parallel_size 2" \
  train "${tiny[@]}" --config "$tmp/cp2.json"

# A pipeline rank that stops mid-training (SIGSTOP: alive but silent, as a hung
# GPU or a stalled node) must end the job through the communicator timeout,
# naming the operation its neighbour waited in; one killed
# (SIGKILL) must end it too (mpirun sees the death). Rank 1 is found by the
# OMPI_COMM_WORLD_RANK in its environment once training has started, and by
# a tag unique to this run: another checkout's tests may be running
# `build/minispeed train` on the same machine, and their ranks are not ours
# to stop.
stop_rank() {  # stop_rank NAME SIGNAL EXPECTED_TEXT
  local name=$1 sig=$2 want=$3 job victim="" pid env_of rc problem="" tag="MS_STOP_RANK_TAG=$tmp"
  env "$tag" OMP_NUM_THREADS=1 MS_COMM_TIMEOUT=3 timeout 120 $mpirun -np 2 "$bin" train --n-layer 2 \
    --n-head 2 --n-embd 16 --seq-len 8 --batch-size 2 --steps 1000000 --eval-every 0 \
    --sample-tokens 0 --log-every 50 --pp 2 --grad-accum 4 > "$tmp/out" 2> "$tmp/err" &
  job=$!
  # Wait for evidence of training (a step line), not a fixed time: up to 90 s
  # on a loaded machine, seconds on an idle one. Then find rank 1 through /proc
  # (no procps: the debian:12 image lacks pgrep).
  for _ in $(seq 450); do
    grep -q '^step' "$tmp/out" && break
    kill -0 "$job" 2> /dev/null || break
    sleep 0.2
  done
  for pid in /proc/[0-9]*; do
    # (2> first: a process that ended since the glob makes the < fail.)
    case "$(tr '\0' ' ' 2> /dev/null < "$pid/cmdline")" in "$bin train "*) ;; *) continue ;; esac
    env_of=$(tr '\0' '\n' 2> /dev/null < "$pid/environ")
    grep -qx 'OMPI_COMM_WORLD_RANK=1' <<<"$env_of" && grep -qxF "$tag" <<<"$env_of" &&
      victim=${pid#/proc/}
  done
  if ! grep -q '^step' "$tmp/out"; then
    problem="no step line within 90 s"
  elif [ -z "$victim" ]; then
    problem="never found rank 1 training"
  else
    kill -"$sig" "$victim"
  fi
  wait "$job"
  rc=$?
  if [ -n "$problem" ]; then
    :
  elif [ "$rc" -eq 124 ]; then
    problem="still running after 120 s (hang)"
  elif [ "$rc" -eq 0 ]; then
    problem="mpirun exited 0"
  elif ! grep -qE -- "$want" "$tmp/err"; then
    problem="stderr lacks '$want'"
  fi
  verdict "$name" "$problem"
}
# Rank 0 may be waiting in its send/recv to rank 1, or (when the stop lands
# after the pipeline's sends) in the gradient norm's all_reduce over pp.
stop_rank "a pipeline rank stopped mid-training: rank 0 times out, naming the operation" STOP \
  '^\[rank 0\] error: (recv from rank 1|send to rank 1|all_reduce|broadcast) .*timed out after 3 s'
stop_rank "a pipeline rank killed mid-training ends the job" KILL '.'

# ---- planted gradient bugs (tensor/placement.h; docs/architecture.md "Placements") ----
# MS_PLANT_BUG makes the code commit one classic silent bug; the run must end
# within the limit, non-zero on every rank, every error line naming the
# placement error (several ranks may reach it at once: each names it).
planted() {  # planted NAME BUG EXPECTED_TEXT NP ARGS...
  local name=$1 bug=$2 want=$3 np=$4 rc problem="" codes
  shift 4
  local wrap='"$0" "$@"; rc=$?; echo "rank exit $rc" >&2; exit $rc'
  MS_PLANT_BUG=$bug OMP_NUM_THREADS=1 timeout 60 $mpirun -np "$np" bash -c "$wrap" "$bin" "$@" \
    > "$tmp/out" 2> "$tmp/err"
  rc=$?
  codes=$(grep -o 'rank exit [0-9]*' "$tmp/err" | awk '{print $3}' | tr '\n' ' ')
  local errors
  errors=$(grep -E '^(\[rank [0-9]+\] )?error: ' "$tmp/err")
  if [ "$rc" -eq 124 ]; then
    problem="still running after 60 s (hang)"
  elif [ "$rc" -eq 0 ]; then
    problem="mpirun exited 0"
  elif echo " $codes" | grep -q ' 0 '; then
    problem="a rank exited 0 (rank exit codes: $codes)"
  elif [ -z "$errors" ]; then
    problem="no error line"
  elif echo "$errors" | grep -vqF -- "$want"; then
    problem="an error line lacks '$want'"
  fi
  verdict "$name" "$problem"
}
gtiny=("${tiny[@]}" --n-layer 2)
planted "planted average-gradient-twice (DDP)" average-gradient-twice \
  "DDP bucket all-reduce: 'ln_f.bias grad' [16] [dp: replicated] is replicated over dp" 2 \
  train "${gtiny[@]}"
planted "planted average-gradient-twice (dp 2 × tp 2)" average-gradient-twice \
  "grad' [16] [dp: replicated] is replicated over dp; it was already reduced" 4 \
  train "${gtiny[@]}" --tp 2
planted "planted skip-tied-embedding-sum (pp 2)" skip-tied-embedding-sum \
  "gradient norm: 'wte.weight grad' [256, 16] [the embedding group (first and last pipeline stage): partial(sum)]" \
  2 train "${gtiny[@]}" --pp 2
planted "planted skip-tied-embedding-sum (pp 2, dp 2, ZeRO-1)" skip-tied-embedding-sum \
  "is partial(sum) over the embedding group (first and last pipeline stage)" 4 \
  train "${gtiny[@]}" --pp 2 --zero-stage 1
planted "planted skip-expert-gradient-reduce (ep 2, expert-dp 2)" skip-expert-gradient-reduce \
  "[expert-dp: partial(sum)] is partial(sum) over expert-dp" 4 \
  train "${gtiny[@]}" --moe-experts 2 --ep 2
planted "planted save-shard-as-whole (bf16, ZeRO-1)" save-shard-as-whole \
  "saving a shard as if it were whole: 'wte.weight' [256, 16] [dp: sharded(dim 0)] is sharded over dp" \
  2 train "${gtiny[@]}" --bf16 --zero-stage 1 --save-weights "$tmp/shard.safetensors"

echo "bad input: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
