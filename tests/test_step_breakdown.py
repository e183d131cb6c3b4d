"""benchmarks/step_breakdown.py: each op's methods timed inside a training step, nested calls counted
once, the rows adding up to the step, the implementations restored afterwards (a tiny run: the
machinery, not the speed)."""
import time

import pytest

from conftest import load_benchmark

from minires import backend


def test_a_method_called_by_another_of_its_op_counts_once():
    module = load_benchmark("step_breakdown")
    timers = module.OpTimers()

    class Impl:
        @staticmethod
        def inner():
            time.sleep(0.01)

        @staticmethod
        def outer():
            Impl.inner()
            time.sleep(0.01)

    undo = module.wrap(Impl, "op", timers)
    Impl.outer()
    Impl.inner()
    undo()
    assert set(timers.seconds) == {"op.outer", "op.inner"}
    assert timers.seconds["op.outer"] >= 0.02 and 0.01 <= timers.seconds["op.inner"] < 0.02
    assert Impl.__dict__["outer"].__func__.__qualname__.endswith("Impl.outer")   # the original is back


def test_rows_add_up_to_the_step_and_the_implementations_are_restored(capsys):
    module = load_benchmark("step_breakdown")
    from minires.cpu import get_num_threads, threads
    from minires.bench.cpu import set_threads
    before = {op: dict(vars(backend._REGISTRY[op].impls[name][0])) for op, name in backend.defaults("cpu").items()
              if op in module.TIMED_OPS}
    pool, ours = threads.pool, get_num_threads()
    try:
        results = {n: module.breakdown("resnet20", 4, n, steps=1) for n in (1, 2)}
        assert module.main(["--model", "resnet20", "--batch", "2", "--threads", "1", "2", "--steps", "1"]) == 0
    finally:
        set_threads(ours)
    after = {op: dict(vars(backend._REGISTRY[op].impls[name][0])) for op, name in backend.defaults("cpu").items()
             if op in module.TIMED_OPS}
    assert after == before and threads.pool is pool
    for r in results.values():
        ops = [name for name in r if "." in name]
        assert {"conv2d.forward", "conv2d.backward", "batch_norm.forward_train", "batch_norm.backward"} <= set(ops)
        assert abs(sum(r[name] for name in ops) + r["everything else"] - r["step"]) < 1e-6
    assert results[1]["fork-join wait"] == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "resnet20, batch 2, ms per step | 1 thread | 2 threads | 1 / 2"
    assert [line.split("|")[0].strip() for line in lines[1:]][-2:] == ["everything else", "fork-join wait"]


REPORT = "results/cpu/2026-12-04-amd-epyc-step-breakdown.txt"


def committed_breakdowns() -> list[tuple[int, dict[str, tuple[float, float]]]]:
    """The committed report's tables: ``[(batch, {row: (1 thread ms, 2 threads ms)})]``."""
    from conftest import REPO
    tables = []
    for line in (REPO / REPORT).read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if line.startswith("resnet20, batch "):
            tables.append((int(line.split("batch ")[1].split(",")[0]), {}))
        elif tables and len(cells) >= 3 and cells[1]:
            tables[-1][1][cells[0]] = (float(cells[1]), float(cells[2]) if cells[2] != "-" else None)
    return tables


def test_the_readmes_breakdown_paragraph_quotes_the_committed_report():
    from conftest import one_line
    readme, tables = one_line("README.md"), committed_breakdowns()
    assert sorted(batch for batch, _ in tables) == [32, 32, 32, 128]

    def span(values, digits=0):
        return f"{min(values):.{digits}f}-{max(values):.{digits}f}"

    def conv(rows, k):
        return sum(v[k] for name, v in rows.items() if name.startswith("conv2d."))

    def rest(rows, k):                                  # batch norm, ReLU and everything else
        return rows["step"][k] - conv(rows, k)

    small = [rows for batch, rows in tables if batch == 32]
    big = next(rows for batch, rows in tables if batch == 128)
    for rows in small + [big]:                          # the rows add up: ops + everything else = step
        total = sum(v[0] for name, v in rows.items() if name not in ("step", "fork-join wait"))
        assert abs(total - rows["step"][0]) < 0.3
    ratio = [conv(r, 0) / conv(r, 1) for r in small]
    assert (f"the convolutions take {span([conv(r, 0) for r in small])} ms per step on one thread and "
            f"{span([conv(r, 1) for r in small])} ms on two ({span(ratio, 2)}x)") in readme
    assert (f"take {span([rest(r, 0) for r in small])} ms on one thread and {span([rest(r, 1) for r in small])} "
            "ms on two") in readme
    assert f"waits {span([r['fork-join wait'][1] for r in small], 1)} ms per step" in readme
    norm_relu = [sum(v[k] for name, v in big.items() if name.startswith(("batch_norm.", "relu."))) for k in (0, 1)]
    assert (f"convolutions gain {conv(big, 0) / conv(big, 1):.2f}x ({conv(big, 0):.0f} -> {conv(big, 1):.0f} ms), "
            f"batch norm and ReLU {norm_relu[0] / norm_relu[1]:.2f}x ({norm_relu[0]:.1f} -> {norm_relu[1]:.1f} ms), "
            f"everything else nothing ({big['everything else'][0]:.0f} ms), and the wait is "
            f"{big['fork-join wait'][1]:.0f} ms of a {big['step'][1]:.0f} ms step") in readme


def test_the_speedup_column_is_left_empty_where_one_thread_has_no_row():
    """A row timed on the most threads only has no one-thread time to divide: "-", not 0.00x."""
    module = load_benchmark("step_breakdown")
    lines = module.report("resnet20", 2, {1: {"step": 10.0, "conv2d.forward": 4.0},
                                          2: {"step": 6.0, "conv2d.forward": 2.0, "relu.forward": 1.0}})
    rows = {line.split("|")[0].strip(): line for line in lines[1:]}
    assert rows["conv2d.forward"].endswith(" 2.00x") and rows["step"].endswith(" 1.67x")
    assert "x" not in rows["relu.forward"].split("|")[-1] and rows["relu.forward"].split("|")[1].strip() == "-"


def test_counts_that_cannot_be_timed_are_refused(capsys):
    module = load_benchmark("step_breakdown")
    for argv in (["--steps", "0"], ["--threads", "1", "0"], ["--batch", "0"]):
        with pytest.raises(SystemExit) as exit_:
            module.main(argv)
        assert exit_.value.code == 2 and "is not a positive integer" in capsys.readouterr().err


def test_tutorial_03_quotes_the_conv_share_of_a_step_from_the_committed_report():
    """Notebook 03 opens with the share of a ResNet-20 step spent in the convolutions: the committed
    report's, per thread count, over all its tables (batch 32 and 128)."""
    import json
    from conftest import REPO
    notebook = json.loads((REPO / "tutorials" / "03_convolution_by_hand.ipynb").read_text())
    opening = " ".join("".join(notebook["cells"][0]["source"]).split())
    shares = [[100 * sum(v[k] for name, v in rows.items() if name.startswith("conv2d.")) / rows["step"][k]
               for _, rows in committed_breakdowns()] for k in (0, 1)]
    one, two = (f"{min(values):.0f}–{max(values):.0f}%" for values in shares)
    assert REPORT in opening
    assert f"{one} of a ResNet-20 training step on one thread and {two} on two, at batch 32 and 128" in opening
