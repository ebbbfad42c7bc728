#!/usr/bin/env bash
# make test's dependency check: every external command that the project's
# shell code runs (scripts/*.sh, .ci/run, the Makefile's recipes and
# $(shell ...) calls) must exist on a fresh minimal Debian 12 after
# scripts/install-deps.sh. `make test` once failed there because
# test-bad-input.sh called `pgrep` (package procps), which the debian:12 image
# lacks and the installer did not install.
#   scripts/check-deps.sh            (from the repository root)
# A command passes when it is a bash builtin or keyword, a function the file
# defines, a program the build makes (a path or a $VARIABLE), guarded by
# `command -v NAME` in the same file (optional: the file copes without it), or
# listed in the table below with a package that is either in the base image or
# in install-deps.sh's list. A new command fails until its package is added:
# to the table, and to install-deps.sh when the base image lacks it.
# The scan is textual (first word of each command, after separators and
# wrappers such as timeout/env/xargs): prose inside quotes is skipped.
set -uo pipefail

# Packages of the debian:12 image: Debian's Priority "required" set (which is
# what debootstrap --variant=minbase installs, and so the image), plus apt.
# procps (pgrep, ps, pkill), python3, file, bc, xxd are NOT among them.
base=(apt base-files base-passwd bash bsdutils coreutils dash debconf debianutils diffutils dpkg
  e2fsprogs findutils grep gzip hostname init-system-helpers libc-bin login mawk mount
  ncurses-base ncurses-bin passwd perl-base sed sensible-utils sysvinit-utils tar tzdata
  util-linux)

# command package (the Debian 12 package that ships it)
table='
apt-get apt
ar binutils
awk mawk
bash bash
basename coreutils
cat coreutils
chmod coreutils
cmp diffutils
cp coreutils
cut coreutils
date coreutils
diff diffutils
dirname coreutils
dpkg dpkg
dpkg-query dpkg
du coreutils
env coreutils
false coreutils
find findutils
g++ g++
git git
grep grep
head coreutils
id coreutils
ldd libc-bin
ln coreutils
ls coreutils
make make
mkdir coreutils
mkfifo coreutils
mknod coreutils
mktemp coreutils
mpicxx libopenmpi-dev
mpirun openmpi-bin
mv coreutils
nproc coreutils
od coreutils
paste coreutils
printf coreutils
readlink coreutils
rm coreutils
sed sed
seq coreutils
sleep coreutils
sort coreutils
stat coreutils
tail coreutils
tee coreutils
touch coreutils
timeout coreutils
tr coreutils
true coreutils
truncate coreutils
uniq coreutils
wc coreutils
xargs findutils
'

fail=0
problem() {
  echo "check-deps: $*"
  fail=$((fail + 1))
}

# install-deps.sh's list: the words of its `packages=(...)` line.
# install-deps.sh's lists: `packages=(...)` and the --dev additions `packages+=(...)`.
installed=$(sed -nE 's/^ *(--dev\) )?packages\+?=\((.*)\).*$/\2/p' scripts/install-deps.sh | tr '\n' ' ')
[ -n "$installed" ] || problem "scripts/install-deps.sh: no 'packages=(...)' line to read"
for pkg in $(echo "$table" | awk 'NF == 2 {print $2}' | sort -u); do
  case " ${base[*]} $installed " in
    *" $pkg "*) ;;
    *) problem "package $pkg (in this script's table) is neither in the debian:12 image nor in scripts/install-deps.sh's list" ;;
  esac
done

builtins=" $(compgen -b -k | tr '\n' ' ') "

# commands_of FILE...: prints "FILE LINE WORD" for the first word of every
# command (in mawk: the debian:12 image's awk). Quoted text (which may span
# lines) becomes the placeholder _Q_, not a command name, except what a $( )
# inside double quotes runs; comments, array literals and $(( arithmetic ))
# are dropped. After a wrapper (timeout, env, xargs, ...) its options, numbers
# and $variables are skipped and the next word is a command too. Code held in
# quotes for `bash -c` is not scanned: keep such strings to builtins and the
# commands the file also runs plainly.
commands_of() {
  awk '
    FNR == 1 { make = (FILENAME == "Makefile"); state = "N"; top = 0 }
    heredoc != "" { if ($0 ~ "^[ \t]*" heredoc "$") heredoc = ""; next }  # data, not run
    {
      line = $0
      if (match(line, /<<-?[ ]*[\047"]?[A-Za-z_]+/) && substr(line, RSTART, 3) != "<<<") {
        heredoc = substr(line, RSTART, RLENGTH)
        gsub(/[<\047" -]/, "", heredoc)
      }
      if (make) {
        if (substr(line, 1, 1) == "\t") line = substr(line, 2)
        else if (index(line, "$(shell ")) line = substr(line, index(line, "$(shell "))
        else next
        gsub(/\$\$/, "$", line)
        gsub(/\$\(shell /, "$(", line)
        sub(/^[@-]+/, "", line)
        gsub(/\$\([A-Za-z_]+\)/, "$v", line)
        gsub(/\$\([a-z]+ /, " _Q_ ", line)  # a make function: $(dir ...), $(if ...)
      }
      # A line after a backslash-newline continues the command: its first
      # word is an argument.
      out = cont ? "_Q_ " : ""
      cont = (state == "N" && line ~ /\\$/)
      for (i = 1; i <= length(line); i++) {
        c = substr(line, i, 1)
        if (state == "A") { if (c == ")") state = "N"; continue }  # an array literal
        if (state == "S") { if (c == "\047") { state = "N"; out = out " _Q_ " }; continue }
        if (state == "D") {
          if (c == "\\") { i++; continue }
          if (c == "\"") { state = "N"; out = out " _Q_ "; continue }
          if (c == "$" && substr(line, i + 1, 2) ~ /^\([^(]/) {
            state = "N"; depth[++top] = 1; out = out " ; "; i++
          }
          continue
        }
        if (c == "\\") { i++; out = out " "; continue }
        if (c == "\047") { state = "S"; continue }
        if (c == "(" && substr(line, i - 1, 1) == "=") { state = "A"; continue }
        if (c == "\"") { state = "D"; continue }
        if (c == "#" && (i == 1 || substr(line, i - 1, 1) ~ /[ \t]/)) break
        if (top && c == "(") depth[top]++
        if (top && c == ")" && --depth[top] == 0) { top--; state = "D"; out = out " ; "; continue }
        out = out c
      }
      line = out
      gsub(/\$\(\([^)]*\)\)/, " ", line)
      gsub(/\(\([^)]*\)\)/, " ", line)
      gsub(/\$\{[^}]*\}/, "$v", line)
      gsub(/[A-Za-z_][A-Za-z0-9_]*\+?=\([^)]*\)/, " ", line)
      gsub(/[0-9]*[<>]+&?[0-9]*/, " ", line)
      gsub(/\|\||&&|[|;&`(){}!]|\$\(/, "\n", line)
      n = split(line, segs, "\n")
      for (s = 1; s <= n; s++) {
        m = split(segs[s], w, /[ \t]+/)
        for (k = 1; k <= m; k++) {
          word = w[k]
          if (word == "" || word ~ /^(then|do|else|elif|if|while|until)$/ || word ~ /^[A-Za-z_][A-Za-z0-9_]*=/) continue
          print FILENAME, FNR, word
          if (word !~ /^(timeout|env|exec|command|xargs|sudo|nohup|time|nice)$/) break
          while (k + 1 <= m && w[k + 1] ~ /^(-.*|[0-9.]+[smh]?|\$.*|[A-Za-z_]+=.*)$/) k++
        }
      }
    }' "$@"
}

# gpu-check.sh runs on the GPU machine, not in `make test`: its first stage
# reports that machine's tools (nvidia-smi, nvcc, python3).
files=($(ls scripts/*.sh | grep -v '^scripts/gpu-check.sh$') scripts/lib/*.sh .ci/run Makefile)
checked=0
declare -A functions guarded
for file in "${files[@]}"; do
  # A file's functions include those of the scripts/lib files it sources.
  lib=$(sed -nE 's|^source "\$\(dirname "\$0"\)/(lib/[a-z_-]+\.sh)".*|scripts/\1|p' "$file")
  functions[$file]=" $(sed -nE 's/^[[:space:]]*([A-Za-z_][A-Za-z0-9_-]*)\(\).*/\1/p' "$file" $lib | tr '\n' ' ') "
  guarded[$file]=" $(grep -oE 'command -v "?[A-Za-z0-9_.+-]+' "$file" | awk '{print $3}' | tr -d '"' |
    tr '\n' ' ') "
done
# The scanner must find what it is for: pgrep after a pipe, inside "$( )",
# after timeout and its number, on a continued line's next command, and not
# the words of prose, arrays, comments, continued arguments or here-documents
# (data, such as JSON; a here-document fed to a shell is not scanned).
probe=$(mktemp)
trap 'rm -f "$probe"' EXIT
cat > "$probe" <<'PROBE'
x=$(ps aux | pgrep -f a)  # sed in a comment
echo "in prose: grep, and $(od -c f) in a string" 'tail' && timeout -k 1 5 seq 3 \
  head "more args"
list=(find
  xxd)
cat <<EOF
pkill in a here-document
EOF
PROBE
found=$(commands_of "$probe" | awk '{print $3}' | sort -u | tr '\n' ' ')
[ "$found" = "_Q_ cat echo od pgrep ps seq timeout " ] ||
  problem "the scanner's self-test found '$found', expected '_Q_ cat echo od pgrep ps seq timeout '"

# Each unknown command once per file, at its first line.
while read -r file n word; do
  # Only plain command names: paths ($bin, build/..., ./x) are the build's own.
  [[ $word =~ ^[a-z][a-z0-9_.+-]*$ ]] || continue
  [[ $builtins == *" $word "* || ${functions[$file]} == *" $word "* ||
    ${guarded[$file]} == *" $word "* ]] && continue
  checked=$((checked + 1))
  grep -qE "^$word [^ ]+$" <<<"$table" ||
    problem "$file:$n runs '$word', which is not a bash builtin and not in scripts/check-deps.sh's table (add it with its Debian package, and the package to scripts/install-deps.sh unless the debian:12 image has it)"
done < <(commands_of "${files[@]}" | sort -k1,1 -k3,3 -k2,2n | sort -u -s -k1,1 -k3,3)

if [ "$fail" -eq 0 ]; then
  echo "check-deps: $checked commands (per file) in ${#files[@]} files, each from the debian:12 image or scripts/install-deps.sh"
fi
[ "$fail" -eq 0 ]
