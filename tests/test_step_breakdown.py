"""benchmarks/step_breakdown.py: each op's methods timed inside a training step, nested calls counted
once, the rows adding up to the step, the implementations restored afterwards (a tiny run: the
machinery, not the speed)."""
import time

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
