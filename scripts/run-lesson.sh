#!/usr/bin/env bash
# Runs one lesson binary, under mpirun when the lesson says it needs ranks
# (a file `ranks` in the lesson folder holding the count).
#   scripts/run-lesson.sh lessons/NN_topic build/lessons/NN_topic/{solution,exercise}
set -uo pipefail
dir=$1 bin=$2
ranks=1
[ -f "$dir/ranks" ] && ranks=$(cat "$dir/ranks")
echo "== lesson $(basename "$dir") ($(basename "$bin"), $ranks rank(s)) =="
if [ "$ranks" -gt 1 ]; then
  exec ${MPIRUN:-mpirun --oversubscribe} -np "$ranks" "$bin"
fi
exec "$bin"
