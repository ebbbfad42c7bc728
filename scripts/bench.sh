#!/usr/bin/env bash
# Runs every benchmark in BUILD/bench. A benchmark that needs ranks says so in
# its source with a line `// bench-ranks: 2 4`; it is run once per count.
# On a CPU with AVX-512, a benchmark that takes `--isa` (our GEMM micro-kernel:
# bench_matmul, bench_attention, bench_train_step) runs a second time with
# `--isa avx2`, so the AVX2 path that AVX2-only machines take is measured on
# every run too (issue 22).
#   scripts/bench.sh build/bench
set -euo pipefail
dir=$1
avx512=false
grep -qw avx512f /proc/cpuinfo 2>/dev/null && avx512=true
for bin in "$dir"/bench_*; do
  name=$(basename "$bin")
  ranks=$(grep -oP '^// bench-ranks:\s*\K.*' "bench/$name.cpp" 2>/dev/null || true)
  if [ -z "$ranks" ]; then
    echo "== $name =="
    "$bin"
    if $avx512 && grep -q '"--isa"' "bench/$name.cpp" 2>/dev/null; then
      echo "== $name --isa avx2 (the AVX2 path, on this AVX-512 CPU) =="
      "$bin" --isa avx2
    fi
  else
    for np in $ranks; do
      echo "== $name ($np ranks) =="
      ${MPIRUN:-mpirun --oversubscribe} -np "$np" "$bin"
    done
  fi
done
