# Comparison helpers shared by scripts/test-train-equivalence.sh and
# scripts/test-layout-matrix.sh: a parallel run against one process, on the
# numbers `minispeed train` prints and the weights it saves.
#   source scripts/lib/compare.sh
losses() { grep -oE 'loss [0-9.]+|val [0-9.]+' | awk '{print $2}'; }
norms() { grep -oE 'norm [0-9.]+' | awk '{print $2}'; }
# within TOL A B: two non-empty columns of numbers, as many in each, every
# pair within TOL (one unit in the last printed digit, for rounding).
within() {
  paste <(echo "$2") <(echo "$3") |
    awk -v tol="$1" '{ d = $1 - $2; if (d < 0) d = -d; if (d > tol || NF != 2) bad = 1 } END { exit bad || NR == 0 }'
}
# same_weights A B [TOL]: two safetensors files with the same header (names,
# shapes, order) whose every f32 differs by at most TOL (default 1.5e-4). The
# header is 8 bytes of length then JSON; the data follows it.
same_weights() {
  local ha hb tol=${3:-1.5e-4}
  ha=$(head -c 8 "$1" 2>/dev/null | od -A n -t u8 | tr -d ' ')
  hb=$(head -c 8 "$2" 2>/dev/null | od -A n -t u8 | tr -d ' ')
  [ -n "$ha" ] && [ "$ha" = "$hb" ] || return 1
  cmp -s <(head -c $((8 + ha)) "$1") <(head -c $((8 + hb)) "$2") || return 1
  paste <(od -A n -v -t f4 -w4 -j $((8 + ha)) "$1") <(od -A n -v -t f4 -w4 -j $((8 + hb)) "$2") |
    awk -v tol="$tol" '{ d = $1 - $2; if (d < 0) d = -d; if (d > tol || NF != 2) bad = 1 } END { exit bad || NR == 0 }'
}
