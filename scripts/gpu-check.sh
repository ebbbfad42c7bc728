#!/usr/bin/env bash
# The GPU session's one script: build with CUDA=1, then run everything that
# needs a GPU, each stage under its own timeout and all of it inside one total
# budget (default 480 s: the device machine's session has 15 minutes in all).
#
#   scripts/gpu-check.sh                 run every stage
#   GPU_CHECK_BUDGET=300 scripts/gpu-check.sh
#
# Prints everything as it goes; when $OUT is set (the device machine's output
# folder) the full log goes to $OUT/gpu-check.log and the per-stage summary,
# with each stage's last lines, to $OUT/gpu-check.txt. A stage whose program
# or tests do not exist yet is reported as SKIP with the reason, never as a
# pass. Exit status: 0 when no stage failed or timed out.
set -uo pipefail
cd "$(dirname "$0")/.."

BUDGET=${GPU_CHECK_BUDGET:-480}
START=$(date +%s)
JOBS=$(nproc 2>/dev/null || echo 4)
B=build-cuda
WORK=$(mktemp -d /tmp/gpu-check.XXXXXX)
LOG=${OUT:+$OUT/gpu-check.log}
LOG=${LOG:-$WORK/gpu-check.log}
SUMMARY=${OUT:+$OUT/gpu-check.txt}
SUMMARY=${SUMMARY:-$WORK/gpu-check.txt}
: >"$LOG"
: >"$WORK/stages"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PYTHONUNBUFFERED=1
failed=0
mkdir -p build  # tests/test_gpt.cpp writes its scratch files under build/, which a fresh clone lacks

say() { echo "$*" | tee -a "$LOG"; }
elapsed() { echo $(($(date +%s) - START)); }

# stage NAME LIMIT_S COMMAND...: runs COMMAND with at most LIMIT_S seconds,
# fewer when the total budget has less left; records PASS/FAIL/TIMEOUT/SKIP.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - $(elapsed)))
  [ "$limit" -gt "$left" ] && limit=$left
  say ""
  say "=============== $name (limit ${limit}s, $(elapsed)s of ${BUDGET}s used) ==============="
  if [ "$limit" -lt 10 ]; then
    say "SKIP: no time left in the ${BUDGET}s budget"
    echo "SKIP     $name: budget spent" >>"$WORK/stages"
    return
  fi
  local t0 out rc verdict
  t0=$(date +%s)
  out=$WORK/$(echo "$name" | tr -c 'A-Za-z0-9_-' _).out
  timeout -k 10 "$limit" bash -c "$*" >"$out" 2>&1
  rc=$?
  cat "$out" | tee -a "$LOG"
  if [ $rc -eq 0 ]; then verdict=PASS
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then verdict=TIMEOUT; failed=1
  elif grep -q "^SKIP:" "$out" || grep -qi "no test cases matched\|No tests ran\|no CUDA device; nothing" "$out"; then verdict=SKIP
  else verdict="FAIL(rc=$rc)"; failed=1
  fi
  say "--- $name: $verdict in $(($(date +%s) - t0))s"
  {
    printf '%-8s %s (%ss)\n' "$verdict" "$name" $(($(date +%s) - t0))
    tail -n 25 "$out" | sed 's/^/    | /'
  } >>"$WORK/stages"
}

# ---- 0: the machine ----
stage "machine" 60 '
  nvidia-smi || echo "nvidia-smi failed"
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv || true
  echo; command -v nvcc >/dev/null || export PATH=${CUDA_HOME:-/usr/local/cuda}/bin:$PATH
  nvcc --version | tail -2; g++ --version | head -1
  python3 -c "import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available())" || echo "PyTorch: not importable"
  echo "git: $(git log --oneline -1 2>/dev/null)"
'

# ---- 1: dependencies (the device machine cannot fetch packages) ----
# Debian/Ubuntu packages carried in .gpu-debs/ (see README, "GPU") are
# unpacked first; then scripts/install-deps.sh --check decides.
stage "dependencies" 120 '
  if ls .gpu-debs/*.deb >/dev/null 2>&1; then
    echo "installing carried packages from .gpu-debs/"; dpkg -i --force-depends .gpu-debs/*.deb >/dev/null 2>&1 || true; ldconfig
  fi
  if scripts/install-deps.sh --check; then echo "all build dependencies present"; exit 0; fi
  for p in g++ make openmpi-bin libopenmpi-dev catch2 nlohmann-json3-dev libopenblas-dev; do
    dpkg-query -W -f="\${Status}" $p 2>/dev/null | grep -q "install ok installed" && echo "have    $p" || echo "MISSING $p"
  done
  ls ${CUDA_HOME:-/usr/local/cuda}/include/nccl.h /usr/include/nccl.h 2>/dev/null || echo "MISSING nccl.h (NCCL headers)"
  exit 1
'
deps_ok=1
grep -q "^PASS *dependencies" "$WORK/stages" || deps_ok=0

# ---- 2: build (CUDA=1, into build-cuda/) ----
# bench/gpu/NAME.cu builds build-cuda/bench/NAME (Makefile, CUDA section).
BENCH_GPU=$(ls bench/gpu/*.cu 2>/dev/null | sed "s|^bench/gpu/|$B/bench/|; s|\.cu$||" | tr '\n' ' ')
if [ $deps_ok = 1 ]; then
  stage "build (make CUDA=1)" 300 "make CUDA=1 -j$JOBS $B/unit_tests $B/mpi_tests $B/minispeed $BENCH_GPU"
else
  say "SKIP build: dependencies missing (stage 'dependencies' lists them)"
  echo "SKIP     build: dependencies missing" >>"$WORK/stages"
fi

# ---- 3: [cuda] unit tests: runtime, allocator, every cuda:: kernel vs its cpu:: twin,
#         the GPT step on the GPU vs the CPU, the PyTorch reference data on the GPU ----
if [ -x $B/unit_tests ]; then
  stage "unit tests [cuda]" 150 "MS_BUILD_DIR=$B $B/unit_tests '[cuda]' --durations yes"
  # ---- 4: NCCL: the collectives on one rank (they are [cuda][nccl], so stage 3
  #         ran them too; here alone, for their own verdict), then the backend
  #         choice at 2 ranks (NCCL with two ranks on one GPU must be refused) ----
  stage "NCCL one rank (unit tests [nccl])" 60 "$B/unit_tests '[nccl]'"
  [ -x $B/mpi_tests ] && stage "backend choice, 2 ranks (mpi_tests [backend])" 90 \
    "OMP_NUM_THREADS=1 mpirun --oversubscribe -np 2 $B/mpi_tests '[backend]'"
else
  say "SKIP tests: $B/unit_tests was not built"
  echo "SKIP     tests: $B/unit_tests was not built" >>"$WORK/stages"
fi

# ---- 5: GPU benchmarks beside PyTorch in the same run (bench/gpu/torch_peer.py
#         runs our binary, then times PyTorch's version of each op) ----
if [ -z "$BENCH_GPU" ]; then
  say "SKIP GPU benchmarks: no bench/gpu/*.cu in this tree"
  echo "SKIP     GPU benchmarks: none in bench/gpu/" >>"$WORK/stages"
fi
for bin in $BENCH_GPU; do
  name=$(basename "$bin")
  if [ ! -x "$bin" ]; then
    say "SKIP $bin: not built"; echo "SKIP     bench $name: not built" >>"$WORK/stages"
  elif [ -f bench/gpu/torch_peer.py ] && python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    stage "bench $name beside PyTorch" 200 "python3 bench/gpu/torch_peer.py --ours $bin ${OUT:+--json $OUT/$name.json}"
  else
    say "(PyTorch with CUDA not importable: $name runs alone)"
    stage "bench $name (alone: no PyTorch peer)" 200 "$bin"
  fi
done

# ---- 6: with what is left, the CPU tests of the CUDA binary (must be unchanged) ----
[ -x $B/unit_tests ] && stage "unit tests, CPU part (~[cuda]~[nccl])" 240 \
  "MS_BUILD_DIR=$B OMP_NUM_THREADS=8 $B/unit_tests '~[cuda]~[nccl]'"

{
  echo "gpu-check: $(date -u +%FT%TZ), $(elapsed)s of ${BUDGET}s, git $(git log --oneline -1 2>/dev/null | cut -c1-60)"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /'
  echo "verdicts (PASS / FAIL / TIMEOUT / SKIP), each with its last lines:"
  cat "$WORK/stages"
  echo "full log: $LOG"
} >"$SUMMARY"
rm -f "$WORK/stages"
say ""
say "=============== summary ==============="
tee -a "$LOG" <"$SUMMARY"
exit $failed
