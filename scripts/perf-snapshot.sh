#!/usr/bin/env bash
# Issue 22's measurements in one go, for the README's Benchmarks section:
#   1. bench_train_step, tiny GPT and GPT-2 width, at 1 and 2 threads, on every
#      micro-kernel this CPU runs (AVX-512 and AVX2 on an AVX-512 CPU), beside
#      PyTorch eager when python3-torch is installed;
#   2. bench_parallel_step --only dp: ZeRO-3 against DDP, round by round;
#   3. `make run`, timed (wall, and the CPU time of every rank together), with
#      its per-phase line (cli/train_step_line.h, PhaseTimes).
# Each part prints the 1-minute load average before and after: the numbers are
# only as quiet as the machine was. Full outputs go to OUT; OUT/summary.txt
# holds the rows to quote. About 12-15 minutes on 2 vCPUs (AMD EPYC, 2026-12).
#   scripts/perf-snapshot.sh [OUT]          (from the repository root; OUT: build/perf-snapshot)
# Knobs (environment): GPT2_ROUNDS (2), GPT2_STEPS (3), TINY_ROUNDS (3),
# PARALLEL_STEPS (40), SKIP_RUN=1 (no `make run`).
set -uo pipefail
out=${1:-build/perf-snapshot}
mkdir -p "$out"
summary=$out/summary.txt
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
load() {
  local l
  read -r l _ </proc/loadavg
  echo "$l"
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

make --no-print-directory -s build/minispeed build/bench/bench_train_step \
  build/bench/bench_parallel_step || exit 1

cpu=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^[^:]*: *//')
isas=()
grep -qw avx512f /proc/cpuinfo && isas+=(avx512)
grep -qw avx2 /proc/cpuinfo && isas+=(avx2)
[ ${#isas[@]} -gt 0 ] || isas=(scalar)
say "perf snapshot $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
say "CPU: ${cpu:-unknown}, $(nproc) CPU(s) online; micro-kernels measured: ${isas[*]}"
say "load average (1 min) at start: $(load)"

# 1. One training step beside PyTorch. The table after "median and min..max"
# is the part to quote (bench_train_step prints it last).
for model in tiny gpt2; do
  if [ $model = tiny ]; then args=(--rounds "${TINY_ROUNDS:-3}"); else
    args=(--rounds "${GPT2_ROUNDS:-2}" --steps "${GPT2_STEPS:-3}")
  fi
  for isa in "${isas[@]}"; do
    f=$out/train_step_${model}_$isa.txt
    before=$(load)
    build/bench/bench_train_step --model $model --isa "$isa" "${args[@]}" >"$f" 2>&1
    say ""
    say "== bench_train_step --model $model --isa $isa ${args[*]} (load $before -> $(load)) =="
    awk '/median and min\.\.max/ {show = 1} show' "$f" | tee -a "$summary"
  done
done

# 2. ZeRO-3 against DDP on 2 ranks, interleaved round by round.
f=$out/parallel_step_dp.txt
before=$(load)
mpirun --oversubscribe --bind-to none -np 2 build/bench/bench_parallel_step --only dp \
  --steps "${PARALLEL_STEPS:-40}" >"$f" 2>&1
say ""
say "== bench_parallel_step --only dp --steps ${PARALLEL_STEPS:-40} (load $before -> $(load)) =="
grep -E '^(setup|one process|dp 2|ZeRO-3 /)' "$f" | tee -a "$summary"

# 3. The README's main job, timed as a user runs it.
if [ "${SKIP_RUN:-0}" != 1 ]; then
  f=$out/make_run.txt
  before=$(load)
  TIMEFORMAT='wall %Rs, CPU of every rank together: user %Us + system %Ss'
  { time make --no-print-directory run >"$f" 2>&1; } 2>"$out/make_run.time"
  say ""
  say "== make run (load $before -> $(load)) =="
  grep -E '^(trained|time per phase)' "$f" | tee -a "$summary"
  tee -a "$summary" <"$out/make_run.time"
fi
say ""
say "load average (1 min) at the end: $(load); full outputs in $out/"
