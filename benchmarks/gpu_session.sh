#!/usr/bin/env bash
# Everything the GPU path has to show, in one call on a machine with an NVIDIA GPU (a lent GPU
# machine is short-lived: nothing here needs installing, `python3 -m` finds the package).
#
#   bash benchmarks/gpu_session.sh OUT [quick|full]
#
# Stages, each under its own time limit so that one hang cannot cost the others, each logged to
# OUT/<stage>.log as it runs:
#   env          the card (nvidia-smi), the versions of Python, NumPy, CuPy, Numba, PyTorch, and
#                when each stage started and ended
#   bench        python -m minires.bench gpu: the GPU tests, then the conv and step table (OUT/*.md)
#   extra-tests  the other gpu-marked tests (NCCL's single-rank communicator)
#   train        minires train --device cuda on the embedded data (quick: 1 epoch; full: the default 4)
#   profile      benchmarks/gpu_profile.py: kernel time vs the host's issue time per training step
# quick is a smoke run (few repeats) that leaves time for a second, full call. The exit status is 1,
# naming them, if any stage failed or ran out of time.
#
# Wheels in .whl/ are installed first, ahead of the machine's own packages: on 2026-12-04 the
# H200 image's numba-cuda 0.30.4 could not compile a kernel under its NumPy 2.5.2 (numba-cuda
# registers np.row_stack, which NumPy 2.5 removed), so that session carried NumPy 2.4.6.
set -u
out=${1:?usage: gpu_session.sh OUT [quick|full]}
mode=${2:-full}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
if [ "$mode" = quick ]; then
    bench_args=(--repeat 5 --warmup 1); train_args=(--epochs 1); profile_args=(--repeat 5); limits=(150 40 60 50)
else
    bench_args=(); train_args=(); profile_args=(--repeat 10); limits=(200 30 90 80)
fi
if [ -n "${GPU_SESSION_LIMITS:-}" ]; then  # e.g. "110 20 50 50": seconds for bench, extra-tests, train, profile
    read -r -a limits <<<"$GPU_SESSION_LIMITS"
fi

failed=()
stage() {  # stage NAME LIMIT COMMAND...: its output to OUT/NAME.log, its times to stdout and OUT/env.log
    local name=$1 limit=$2
    shift 2
    echo "== $name: started $(date -u +%H:%M:%S), limit ${limit}s" | tee -a "$out/env.log"
    timeout -k 5 "$limit" "$@" >"$out/$name.log" 2>&1
    local code=$?
    [ "$code" -eq 0 ] || failed+=("$name")
    echo "   $name: exit $code at $(date -u +%H:%M:%S)" | tee -a "$out/env.log"
    tail -n 3 "$out/$name.log"
}

{
    nvidia-smi
    python3 - <<'EOF'
import importlib.metadata, sys
print("python", sys.version.split()[0])
for package in ["numpy", "cupy-cuda13x", "cupy-cuda12x", "numba", "numba-cuda", "torch", "mpi4py"]:
    try:
        print(package, importlib.metadata.version(package))
    except importlib.metadata.PackageNotFoundError:
        print(package, "not installed")
EOF
} >"$out/env.log" 2>&1
grep -E "NVIDIA|Driver|^python|^numpy|^cupy|^numba|^torch" "$out/env.log"

stage bench "${limits[0]}" python3 -m minires.bench gpu --out "$out" "${bench_args[@]}"
stage extra-tests "${limits[1]}" python3 -m pytest -m gpu -p no:cacheprovider --tb=short tests/test_distributed.py
rm -rf /tmp/minires-gpu-train
stage train "${limits[2]}" python3 -m minires train --model resnet20 --device cuda --no-progress \
    --out /tmp/minires-gpu-train "${train_args[@]}"
cp /tmp/minires-gpu-train/metrics.jsonl "$out/train-metrics.jsonl" 2>/dev/null
stage profile "${limits[3]}" python3 benchmarks/gpu_profile.py "${profile_args[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed stages: ${failed[*]}"
    exit 1
fi
