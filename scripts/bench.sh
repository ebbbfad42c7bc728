#!/usr/bin/env bash
# Runs every benchmark in BUILD/bench. A benchmark that needs ranks says so in
# its source with a line `// bench-ranks: 2 4`; it is run once per count.
#   scripts/bench.sh build/bench
set -euo pipefail
dir=$1
for bin in "$dir"/bench_*; do
  name=$(basename "$bin")
  ranks=$(grep -oP '^// bench-ranks:\s*\K.*' "bench/$name.cpp" 2>/dev/null || true)
  if [ -z "$ranks" ]; then
    echo "== $name =="
    "$bin"
  else
    for np in $ranks; do
      echo "== $name ($np ranks) =="
      ${MPIRUN:-mpirun --oversubscribe} -np "$np" "$bin"
    done
  fi
done
