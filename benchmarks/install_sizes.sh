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

mebibytes() { du -sm "$1" | cut -f1; }   # du -m: units of 2^20 bytes

"$python" -m venv "$work/venv"
echo "| install | venv size | install time |"
echo "|---|---|---|"
echo "| (an empty venv: $("$python" --version), pip) | $(mebibytes "$work/venv") MiB | - |"
rm -rf "$work/venv"
for extra in "${extras[@]}"; do
  target=.
  [[ -n $extra ]] && target=".[$extra]"
  "$python" -m venv "$work/venv"
  start=$(date +%s.%N)
  "$work/venv/bin/python" -m pip install -q -e "$target" >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  end=$(date +%s.%N)
  printf '| `pip install -e "%s"` | %s MiB | %.0f s |\n' "$target" "$(mebibytes "$work/venv")" "$(awk "BEGIN {print $end - $start}")"
  [[ -z $extra ]] && largest=$(du -sm "$work"/venv/lib/python*/site-packages/* | sort -rn | head -8 \
                                | awk '{n = split($2, p, "/"); printf "%s%s %s MiB", (NR > 1 ? ", " : ""), p[n], $1}')
  rm -rf "$work/venv"
done
if [[ -n ${largest:-} ]]; then
  echo
  echo "Largest folders of site-packages in the environment of \`pip install -e \".\"\`: $largest"
fi
