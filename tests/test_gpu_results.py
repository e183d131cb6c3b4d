"""The committed GPU results (results/gpu) and what the READMEs say of them: every number quoted is
read here from the bench tables, the profiles and the training metrics of the two H200 runs."""
import json
import re
from pathlib import Path

import pytest

from conftest import one_line

from minires.bench.gpu import target_lines

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "results" / "gpu"
RUNS = {"run 2": "2026-12-04-nvidia-h200", "run 1": "2026-12-04-nvidia-h200-run1"}


def table(text: str, after: str) -> list[list[str]]:
    """The rows of the first ``format_table`` table after the line starting with ``after``: cells are
    separated by two or more spaces."""
    lines = text[text.index(after):].splitlines()
    start = next(i for i, line in enumerate(lines) if set(line) <= {"-", " "} and line.strip()) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip() or line.startswith(("```", "model ", "batch ")):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def bench_rows(run: str) -> list[list]:
    """The bench table of ``run`` as minires.bench rows (numbers as floats, "-" as None)."""
    text = (GPU / f"{RUNS[run]}.md").read_text()
    return [cells[:4] + [None if c == "-" else float(c) for c in cells[4:]] for cells in table(text, "part ")]


def bench_cell(run, case, impl, column, math="fp32"):
    columns = {"total ms": 6, "x torch": 7}
    row = next(r for r in bench_rows(run) if r[1] == case and r[2] == impl and r[3] == math)
    return row[columns[column]]


def profile(run: str) -> dict:
    """``{(model, impl): (step ms, issue ms, kernel ms, kernels)}`` from the run's profile summary."""
    text = (GPU / f"{RUNS[run]}-profile.log").read_text()
    return {(r[0], r[1]): tuple(float(v) for v in r[2:6]) for r in table(text, "batch 128, median of")}


def epochs(run: str) -> list[dict]:
    path = GPU / f"{RUNS[run]}-train-metrics.jsonl"
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "epoch"]


@pytest.mark.parametrize("run", RUNS)
def test_every_gpu_test_passed_in_both_runs(run):
    header = (GPU / f"{RUNS[run]}.md").read_text().split("```")[0]
    passed = re.match(r"(\d+) passed", (GPU / f"{RUNS[run]}-tests.log").read_text().splitlines()[-1])
    assert passed, f"the last line of {RUNS[run]}-tests.log does not say the GPU tests passed"
    assert f"GPU tests: {passed.group(1)} passed" in header and "FAILED" not in header and "error" not in header.lower()
    assert f"every GPU test passes ({passed.group(1)}: each kernel" in one_line(ROOT / "README.md")


def test_the_nccl_single_rank_test_passed():
    assert (GPU / "2026-12-04-nvidia-h200-nccl-tests.log").read_text().strip().splitlines()[-1].startswith("1 passed")


def test_the_committed_table_judges_its_targets_as_the_code_does():
    header = (GPU / f"{RUNS['run 2']}.md").read_text().split("```")[0]
    for line in target_lines(bench_rows("run 2")):
        assert line in header


def test_the_readmes_quote_the_conv_and_step_ratios_of_both_runs():
    results, readme = one_line(GPU / "README.md"), one_line(ROOT / "README.md")
    conv = {run: bench_cell(run, "resnet20: all 19 convs", "cupy", "x torch") for run in RUNS}
    step = {run: bench_cell(run, "resnet20 batch 128", "cupy", "x torch") for run in RUNS}
    fastest = min((r for r in bench_rows("run 2") if r[1] == "resnet20: all 19 convs" and r[2] != "torch"
                   and r[3] == "fp32"), key=lambda r: r[7])
    assert fastest[2] == "cupy"  # "the fastest conv, cupy"
    for text in (results, readme):
        assert f"takes {conv['run 2']:.2f}x cuDNN's time over ResNet-20's" in text
        assert f"({conv['run 1']:.2f}x in run 1)" in text or f"({conv['run 1']:.2f}x in the other run)" in text
        assert conv["run 2"] > 2 and step["run 2"] > 2 and conv["run 1"] > 2 and step["run 1"] > 2 and "miss" in text
    assert f"{step['run 2']:.2f}x eager PyTorch's ({step['run 1']:.2f}x)" in readme
    assert f"ms, {step['run 2']:.2f}x (run 1: " in results and f"ms, {step['run 1']:.2f}x):" in results
    ms = {run: (bench_cell(run, "resnet20 batch 128", "cupy", "total ms"),
                bench_cell(run, "resnet20 batch 128", "torch", "total ms")) for run in RUNS}
    assert f"takes {ms['run 2'][0]:.2f} ms against eager PyTorch's {ms['run 2'][1]:.2f} ms" in results
    assert f"run 1: {ms['run 1'][0]:.2f} against {ms['run 1'][1]:.2f} ms" in results
    torch_moved, minires_moved = (abs(a / b - 1) for a, b in zip(ms["run 2"][::-1], ms["run 1"][::-1]))
    assert f"moved by {100 * torch_moved:.0f}% between the runs, minires' by {100 * minires_moved:.1f}%" in results
    resnet56 = [bench_cell(run, "resnet56 batch 128", "cupy", "x torch") for run in RUNS]
    assert f"ResNet-56: {resnet56[0]:.2f}x ({resnet56[1]:.2f}x)" in results


def test_the_readmes_read_the_profile_right():
    results, readme = one_line(GPU / "README.md"), one_line(ROOT / "README.md")
    rows = profile("run 2")
    step, issue, kernel, launches = rows[("resnet20", "cupy")]
    assert issue / step > 0.9 and kernel / step < 0.6  # host-bound: what both READMEs say
    assert f"issues {launches:.0f} kernels per ResNet-20 step in {issue:.2f} ms of a {step:.2f} ms step" in results
    assert f"the GPU computes for {kernel:.2f} ms" in results
    assert f"issuing {launches:.0f} kernel launches; the GPU computes {kernel:.2f} ms of its {step:.2f} ms" in readme
    unfused = rows[("resnet20", "cupy, sgd cupy-ops")]
    assert f"from {unfused[3]:.0f} launches and {unfused[0]:.2f} ms to {launches:.0f} and {step:.2f} ms" in results
    torch_step = rows[("resnet20", "torch")]
    assert f"PyTorch's step runs {torch_step[3]:.0f} kernels, {torch_step[2]:.2f} ms of GPU time" in results
    text = (GPU / f"{RUNS['run 2']}-profile.log").read_text()
    kernels = {r[0]: float(r[1]) for r in table(text, "resnet20, minires (cupy, sgd cupy): every kernel")}
    bn = (kernels["batch_norm_forward_train"], kernels["batch_norm_backward"])
    assert f"im2col {kernels['im2col']:.2f} ms, batch norm {sum(bn):.2f} ms (forward {bn[0]:.2f}, backward {bn[1]:.2f}" \
        in results


def test_the_readmes_quote_the_gpu_training_run():
    results, readme = one_line(GPU / "README.md"), one_line(ROOT / "README.md")
    final, first = epochs("run 2"), epochs("run 1")
    assert [e["test_error"] for e in final] == [e["test_error"] for e in first]  # "the same errors in every epoch"
    accuracy = f"{100 * final[-1]['test_accuracy']:.2f}%"
    later = [10_000 / e["images_per_second"] for e in final[1:]]
    rates = [e["images_per_second"] for e in final[1:]]
    for text in (results, readme):
        assert f"reaches {accuracy} held-out accuracy" in text
        assert f"{min(later):.2f}" in text and f"{max(later):.2f} s" in text
        assert f"{10_000 / final[0]['images_per_second']:.1f} s" in text
    assert f"({min(rates):,.0f} to {max(rates):,.0f} images/s)" in results
    step_ms = [64e3 / rate for rate in rates]                      # the default run's batch is 64
    bench_ms = bench_cell("run 2", "resnet20 batch 128", "cupy", "total ms")
    assert f"A training step ({min(step_ms):.1f} to {max(step_ms):.1f} ms for 64 images in epochs 2-4) costs more " \
           f"than the bench's ({bench_ms:.2f} ms for 128)" in results
    log = (GPU / "2026-12-04-nvidia-h200-session.log").read_text()
    started = re.search(r"train: started (\d+:\d+:\d+)", log).group(1)
    ended = re.search(r"train: exit 0 at (\d+:\d+:\d+)", log).group(1)
    assert f"the whole command took {clock_seconds(ended) - clock_seconds(started)} s" in results


def clock_seconds(hh_mm_ss: str) -> int:
    hours, minutes, seconds = map(int, hh_mm_ss.split(":"))
    return 3600 * hours + 60 * minutes + seconds


def test_the_numpy_2_5_failure_and_the_carried_numpy_are_the_committed_logs():
    """"numba-cuda 0.30.4 needs NumPy < 2.5": the first call failed in numba-cuda under NumPy 2.5.2,
    and the runs whose tests all passed had NumPy 2.4.6."""
    failure = (GPU / "2026-12-04-nvidia-h200-numpy25.log").read_text()
    assert "numpy 2.5.2" in failure and "numba-cuda 0.30.4" in failure and "numba_cuda/numba/cuda" in failure
    assert failure.strip().splitlines()[-1] == "AttributeError: module 'numpy' has no attribute 'row_stack'"
    for run in RUNS:
        header = (GPU / f"{RUNS[run]}.md").read_text().split("```")[0]
        assert "numba-cuda 0.30.4" in header and "numpy 2.4.6" in header and "GPU tests: 58 passed" in header
    for text in (one_line(GPU / "README.md"), one_line(ROOT / "README.md")):
        assert "numba-cuda 0.30.4" in text and ("NumPy < 2.5" in text or "NumPy 2.5.2" in text)
