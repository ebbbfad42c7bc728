#!/usr/bin/env bash
# make test's documentation check: what the docs point at must exist.
#   1. Every lesson README ends its teaching with a section
#      "## From the exercise to the framework" naming where the learner's
#      function lives in the framework, as "lines X–Y of `PATH` (`SYMBOL`)".
#      Every such reference, in any doc, must hold: PATH exists, X..Y lies in
#      it, SYMBOL is defined within lines X..X+2 and line Y closes it (starts
#      with `}`), so the range is one whole function or class. Line numbers
#      drift as code changes: this check is what keeps them honest.
#   2. No doc names a lesson that does not exist ("lesson 09", "lessons 08 and
#      09", "L=11", "lessons/10_...") unless the same line says "planned"; and a
#      line that says "planned" must name at least one lesson still missing.
#   scripts/check-docs.sh            (from the repository root)
set -uo pipefail
fail=0
problem() {
  echo "check-docs: $*"
  fail=$((fail + 1))
}

docs=(README.md docs/*.md lessons/*/README.md)

# ---- 1. "lines X–Y of `PATH` (`SYMBOL`)" references ----
for readme in lessons/[0-9][0-9]_*/README.md; do
  grep -q '^## From the exercise to the framework$' "$readme" ||
    problem "$readme: no '## From the exercise to the framework' section"
  grep -qP 'lines \d+–\d+ of `[^`]+` \(`[^`]+`\)' "$readme" ||
    problem "$readme: no 'lines X–Y of \`PATH\` (\`SYMBOL\`)' reference to the framework"
done
refs=0
while IFS= read -r hit; do
  doc=${hit%%:*}
  ref=${hit#*:}
  first=$(sed -E 's/^lines ([0-9]+)–.*/\1/' <<<"$ref")
  last=$(sed -E 's/^lines [0-9]+–([0-9]+) .*/\1/' <<<"$ref")
  path=$(sed -E 's/^[^`]*`([^`]+)`.*/\1/' <<<"$ref")
  symbol=$(sed -E 's/.*\(`([^`]+)`\)$/\1/' <<<"$ref")
  refs=$((refs + 1))
  if [ ! -f "$path" ]; then
    problem "$doc: '$ref': no file $path"
    continue
  fi
  total=$(wc -l <"$path")
  if [ "$first" -lt 1 ] || [ "$first" -gt "$last" ] || [ "$last" -gt "$total" ]; then
    problem "$doc: '$ref': $path has $total lines"
    continue
  fi
  sed -n "${first},$((first + 2))p" "$path" | grep -qF -- "$symbol" ||
    problem "$doc: '$ref': $symbol is not defined at line $first of $path (it says: $(sed -n "${first}p" "$path"))"
  sed -n "${last}p" "$path" | grep -qE '^\s*\}' ||
    problem "$doc: '$ref': line $last of $path does not close $symbol (it says: $(sed -n "${last}p" "$path"))"
done < <(grep -oP 'lines \d+–\d+ of `[^`]+` \(`[^`]+`\)' "${docs[@]}" /dev/null)

# ---- 2. lessons that do not exist must be marked planned ----
have=" $(ls -d lessons/[0-9][0-9]_* | sed -E 's|lessons/([0-9]{2})_.*|\1|' | tr '\n' ' ')"
while IFS= read -r hit; do
  doc=${hit%%:*}
  rest=${hit#*:}
  line=${rest%%:*}
  text=${rest#*:}
  nums=$(grep -oP '(?i:lessons?)\s+\d{2}(?:(?:\s*(?:,|and|or|to|–|-)\s*)\d{2})*|L=\d{2}|lessons/\d{2}|\b\d{2} \(planned\)' <<<"$text" |
    grep -oP '\d{2}')
  missing=""
  for n in $nums; do
    [[ "$have" == *" $n "* ]] || missing+=" $n"
  done
  stale=0
  for n in $(grep -oP '\b\d{2}(?=\s*\(planned|,\s*planned)' <<<"$text"); do
    [[ "$have" == *" $n "* ]] && stale=1 && problem "$doc:$line: calls lesson $n planned, but it exists: $text"
  done
  if grep -qi planned <<<"$text"; then
    # "planned" must be about a lesson that is still missing, not one that has landed.
    [ -z "$missing" ] && [ "$stale" -eq 0 ] && problem "$doc:$line: says planned, but every lesson it names exists:$(tr '\n' ' ' <<<" $nums")— drop \"planned\": $text"
    continue
  fi
  for n in $missing; do
    problem "$doc:$line: names lesson $n, which does not exist (say \"planned\" on that line): $text"
  done
done < <(grep -nP '(?i:lessons?)\s+\d{2}|L=\d{2}|lessons/\d{2}|\b\d{2} \(planned\)' "${docs[@]}" /dev/null)

if [ "$fail" -eq 0 ]; then
  echo "docs: $refs framework references hold, no unplanned lesson is named"
else
  echo "docs: $fail problem(s)"
  exit 1
fi
