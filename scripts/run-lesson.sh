#!/usr/bin/env bash
# Runs one lesson binary, under mpirun when the lesson says it needs ranks
# (a file `ranks` in the lesson folder holding the count).
#   scripts/run-lesson.sh lessons/NN_topic build/lessons/NN_topic/{solution,exercise}
#
# Under mpirun the learner's diagnosis is the last thing printed. When a rank
# exits non-zero, Open MPI closes with a dozen lines of its own ("Primary job
# terminated normally, but 1 process returned a non-zero exit code..." and
# "mpirun detected that one or more processes exited with non-zero
# status...") after the checker's FAIL. mpirun's --quiet (MCA parameter
# orte_execute_quiet, Open MPI 4.1: "Do not output error and help messages")
# turns off exactly those messages of Open MPI's; every rank's own stdout and
# stderr still come through and the exit status is kept, so nothing the
# program says is filtered. In place of Open MPI's text:
#   - the failing rank wrote its verdict to $MS_LESSON_VERDICT
#     (lessons/lesson_check.h, record_verdict): it is printed again, last;
#   - no verdict (a rank crashed, was killed or aborted before a check could
#     fail): the exit status is decoded, and LESSON_MPI_VERBOSE=1 reruns with
#     Open MPI's own report.
set -uo pipefail
dir=$1 bin=$2
ranks=1
[ -f "$dir/ranks" ] && ranks=$(cat "$dir/ranks")
echo "== lesson $(basename "$dir") ($(basename "$bin"), $ranks rank(s)) =="
if [ "$ranks" -le 1 ]; then
  exec "$bin"
fi
# A path that does not exist yet: the first rank to create it writes the verdict.
verdict_dir=$(mktemp -d)
verdict=$verdict_dir/verdict
trap 'rm -rf "$verdict_dir"' EXIT
quiet=--quiet
[ -n "${LESSON_MPI_VERBOSE:-}" ] && quiet=
MS_LESSON_VERDICT=$verdict ${MPIRUN:-mpirun --oversubscribe} $quiet -np "$ranks" "$bin"
rc=$?
[ "$rc" -eq 0 ] && exit 0
echo
if [ -s "$verdict" ]; then
  echo "== the diagnosis (the first check that failed) =="
  cat "$verdict"
elif [ "$rc" -gt 128 ]; then
  sig=$((rc - 128))
  echo "== no check reached a verdict: a rank was killed by signal $sig" \
    "($(kill -l "$sig" 2>/dev/null || echo '?')), mpirun exit status $rc. For Open MPI's" \
    "report of which rank: LESSON_MPI_VERBOSE=1 scripts/run-lesson.sh $dir $bin =="
else
  echo "== no check reached a verdict: mpirun exit status $rc. The reason is above: a rank's" \
    "'[rank r] error: ...' line, or mpirun's own refusal to start. For Open MPI's full report:" \
    "LESSON_MPI_VERBOSE=1 scripts/run-lesson.sh $dir $bin =="
fi
exit "$rc"
