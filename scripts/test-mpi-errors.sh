#!/usr/bin/env bash
# make mpi-test's failure check: a multi-rank job must END, non-zero and with a
# message naming the rank, when one rank fails — never hang (docs/architecture.md, Errors).
# Runs build/mpi_tests' probe modes (tests/mpi/main.cpp) under mpirun -np 2:
#   error-on-rank     rank 1 throws ms::Error while rank 0 waits in a barrier
#   uncaught-on-rank  the same exception escapes main (std::terminate path)
#   skip-collective   rank 1 skips an all_reduce; rank 0's 2 s timeout must fire
#   scripts/test-mpi-errors.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: scripts/test-mpi-errors.sh BUILD_DIR}
bin=$build/mpi_tests
mpirun=${MPIRUN:-mpirun --oversubscribe}
limit=30  # seconds: "within seconds"; far below the 60 s hang guard
pass=0 fail=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# probe NAME FLAG EXPECTED_STDERR_TEXT
probe() {
  local name=$1 flag=$2 want=$3 start rc elapsed
  start=$(date +%s)
  timeout 60 $mpirun -np 2 "$bin" "$flag" 1 > /dev/null 2> "$log"
  rc=$?
  elapsed=$(($(date +%s) - start))
  if [ "$rc" -eq 0 ]; then
    echo "FAILED: $name: exited 0, expected non-zero"
  elif [ "$rc" -eq 124 ]; then
    echo "FAILED: $name: still running after 60 s (hang)"
  elif [ "$elapsed" -gt "$limit" ]; then
    echo "FAILED: $name: took ${elapsed} s to abort (limit ${limit} s)"
  elif ! grep -qF -- "$want" "$log"; then
    echo "FAILED: $name: stderr lacks '$want'; it was:"
    sed 's/^/  /' "$log"
  else
    echo "ok: $name (exit $rc after ${elapsed} s)"
    pass=$((pass + 1))
    return
  fi
  fail=$((fail + 1))
}

probe "an error on rank 1 aborts the job" --ms-probe-error-on-rank \
  "[rank 1] error: probe: rank 1 fails on purpose"
probe "an exception escaping main on rank 1 aborts the job" --ms-probe-uncaught-on-rank \
  "[rank 1] error: probe: uncaught exception"
probe "a skipped collective times out, naming the op" --ms-probe-skip-collective \
  "[rank 0] error: all_reduce on a communicator of size 2 timed out after 2 s"

echo "mpi error handling: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
