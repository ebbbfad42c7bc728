#!/usr/bin/env bash
# make test's lesson check: every solution passes; every untouched exercise
# builds and fails (so a learner sees the checker reject the stubs); every
# deliberately wrong exercise, lessons/NN_topic/wrong/NAME.cpp, fails WITH the
# diagnosis it was written to provoke: each of its `// expect: TEXT` lines must
# appear in the checker's output (so a hint that names the wrong bug is caught).
# Under mpirun (a lesson with a `ranks` file) the diagnosis must also come
# LAST: the wrong case's output ends with scripts/run-lesson.sh's re-print of
# the verdict — a FAIL line and the explanation, holding at least one of the
# case's `// expect:` lines (the rest may be measured tables printed before) —
# and carries none of Open MPI's closing boilerplate ("Primary job terminated
# normally...", "mpirun detected that one or more processes exited...").
#   scripts/check-lessons.sh BUILD_DIR lessons/NN_topic ...
set -uo pipefail
build=$1
shift
pass=0 fail=0
last_problem=""
# A multi-rank wrong case: the text from the last "== the diagnosis" header to
# the end holds a FAIL line and one of the expect lines, and Open MPI's
# boilerplate is nowhere.
last_is_diagnosis() {
  local src=$1 log=$2 tail_text want
  last_problem=""
  for noise in "Primary job" "mpirun detected that one or more processes"; do
    grep -qF -- "$noise" "$log" && last_problem+="    Open MPI's '$noise...' boilerplate is in the output"$'\n'
  done
  tail_text=$(awk '/^== the diagnosis/ { buf = ""; on = 1 } on { buf = buf $0 "\n" } END { printf "%s", buf }' "$log")
  [ -n "$tail_text" ] || last_problem+="    no '== the diagnosis' re-print at the end"$'\n'
  grep -q '^FAIL' <<< "$tail_text" || last_problem+="    the closing diagnosis has no FAIL line"$'\n'
  local named=0
  while IFS= read -r want; do
    grep -qF -- "$want" <<< "$tail_text" && named=1
  done < <(sed -n 's|^// expect: ||p' "$src")
  [ "$named" -eq 1 ] || last_problem+="    the closing diagnosis holds none of the expect lines"$'\n'
  [ -z "$last_problem" ]
}
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
  for src in "$dir"/wrong/*.cpp; do
    [ -e "$src" ] || continue
    case=$(basename "$src" .cpp)
    bin="$build/lessons/$name/wrong/$case"
    log="$bin.log"
    if scripts/run-lesson.sh "$dir" "$bin" > "$log" 2>&1; then
      fail=$((fail + 1))
      echo "FAILED: lesson $name wrong/$case.cpp passes: the checker misses that bug"
      continue
    fi
    missing=""
    while IFS= read -r want; do
      grep -qF -- "$want" "$log" || missing+="    $want"$'\n'
    done < <(sed -n 's|^// expect: ||p' "$src")
    if [ -z "$(sed -n 's|^// expect: ||p' "$src")" ]; then
      fail=$((fail + 1))
      echo "FAILED: lesson $name wrong/$case.cpp has no '// expect: ' line"
    elif [ -n "$missing" ]; then
      fail=$((fail + 1))
      echo "FAILED: lesson $name wrong/$case.cpp is rejected, but the output lacks:"
      printf '%s' "$missing"
      echo "  output:"
      sed 's/^/    /' "$log" | tail -n 30
    elif [ "$(cat "$dir/ranks" 2>/dev/null || echo 1)" -gt 1 ] && ! last_is_diagnosis "$src" "$log"; then
      fail=$((fail + 1))
      echo "FAILED: lesson $name wrong/$case.cpp: the output does not END with the diagnosis:"
      printf '%s' "$last_problem"
      echo "  output (last lines):"
      sed 's/^/    /' "$log" | tail -n 15
    else
      pass=$((pass + 1))
    fi
  done
done
# run-lesson.sh itself: a multi-rank run that dies before any check reaches a
# verdict (here a rank killed by SIGSEGV) must still end with what happened,
# the signal named, although --quiet silences Open MPI's own report of it.
crash_dir=$(mktemp -d)
echo 2 > "$crash_dir/ranks"
printf '#!/bin/sh\nkill -SEGV $$\n' > "$crash_dir/crash"
chmod +x "$crash_dir/crash"
crash_out=$(scripts/run-lesson.sh "$crash_dir" "$crash_dir/crash" 2>&1)
crash_rc=$?
rm -rf "$crash_dir"
if [ "$crash_rc" -ne 0 ] && tail -n 1 <<< "$crash_out" | grep -q "killed by signal 11 (SEGV)" &&
   ! grep -q "Primary job" <<< "$crash_out"; then
  pass=$((pass + 1))
else
  fail=$((fail + 1))
  echo "FAILED: run-lesson.sh on a rank killed by SIGSEGV (exit $crash_rc) does not end with the signal:"
  sed 's/^/    /' <<< "$crash_out" | tail -n 8
fi
echo "lessons: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
