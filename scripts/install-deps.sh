#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages minispeed needs, when they are missing.
#   scripts/install-deps.sh           install what is missing (as root), or print the command
#   scripts/install-deps.sh --check   exit 0 if everything is there, 1 otherwise (installs nothing)
#   scripts/install-deps.sh --dev     also the optional tools: clang-format and git (make format), python3-torch
#                                     (PyTorch: reference data and the benchmark peer only)
set -euo pipefail

# Beyond the debian:12 image (scripts/check-deps.sh, part of `make test`,
# checks that every command the scripts and the Makefile run comes from the
# image or from this list).
packages=(g++ binutils make openmpi-bin libopenmpi-dev catch2 nlohmann-json3-dev libopenblas-dev)
mode=install
case "${1:-}" in
  --check) mode=check ;;
  --dev) packages+=(clang-format git python3-torch python3-numpy) ;;
  "") ;;
  -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
  *) echo "install-deps.sh: unknown option '$1' (valid: --check, --dev, --help)" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  [ "$mode" = check ] || echo "install-deps: all dependencies present"
  exit 0
fi
[ "$mode" = check ] && exit 1

cmd="apt-get install -y ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "minispeed needs these packages: ${missing[*]}" >&2
  echo "Run:  sudo apt-get update && sudo $cmd" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
$cmd >&2
