#!/usr/bin/env bash
# Size and install time of minires alone and with each extra, each in a fresh virtual environment:
# the table in the README's "Installing" section.
#   benchmarks/install_sizes.sh                 # ".", then every extra of setup.cfg
#   benchmarks/install_sizes.sh test numba      # only these ("" is minires alone)
# PYTHON picks the interpreter (default python3). The time includes pip resolving and downloading
# (from whatever index pip is configured with; a warm pip cache makes it shorter); the size is
# `du` of the whole environment, pip and setuptools included (an empty one is the first row).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if (($#)); then extras=("$@"); else extras=("" test numba mpi tutorials browser gpu dev); fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

megabytes() { du -sm "$1" | cut -f1; }

"$python" -m venv "$work/venv"
echo "| install | venv size | install time |"
echo "|---|---|---|"
echo "| (an empty venv: $("$python" --version), pip) | $(megabytes "$work/venv") MB | - |"
rm -rf "$work/venv"
for extra in "${extras[@]}"; do
  target=.
  [[ -n $extra ]] && target=".[$extra]"
  "$python" -m venv "$work/venv"
  start=$(date +%s.%N)
  "$work/venv/bin/python" -m pip install -q -e "$target" >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  end=$(date +%s.%N)
  printf '| `pip install -e "%s"` | %s MB | %.0f s |\n' "$target" "$(megabytes "$work/venv")" "$(awk "BEGIN {print $end - $start}")"
  rm -rf "$work/venv"
done
