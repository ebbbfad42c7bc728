#!/usr/bin/env bash
# make test's lesson check: every solution passes; every untouched exercise
# builds and fails (so a learner sees the checker reject the stubs).
#   scripts/check-lessons.sh BUILD_DIR lessons/NN_topic ...
set -uo pipefail
build=$1
shift
pass=0 fail=0
for dir in "$@"; do
  name=$(basename "$dir")
  if scripts/run-lesson.sh "$dir" "$build/lessons/$name/solution" > "$build/lessons/$name/solution.log" 2>&1; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAILED: lesson $name solution does not pass:"
    sed 's/^/  /' "$build/lessons/$name/solution.log"
  fi
  if scripts/run-lesson.sh "$dir" "$build/lessons/$name/exercise" > "$build/lessons/$name/exercise.log" 2>&1; then
    fail=$((fail + 1))
    echo "FAILED: lesson $name exercise passes untouched: its checker cannot fail"
  else
    pass=$((pass + 1))
  fi
done
echo "lessons: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
