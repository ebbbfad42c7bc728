#!/usr/bin/env bash
# make test's lesson check: every solution passes; every untouched exercise
# builds and fails (so a learner sees the checker reject the stubs); every
# deliberately wrong exercise, lessons/NN_topic/wrong/NAME.cpp, fails WITH the
# diagnosis it was written to provoke: each of its `// expect: TEXT` lines must
# appear in the checker's output (so a hint that names the wrong bug is caught).
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
    else
      pass=$((pass + 1))
    fi
  done
done
echo "lessons: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
