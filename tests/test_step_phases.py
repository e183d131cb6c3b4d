"""benchmarks/step_phases.py and the phased training step: each phase timed, minires and PyTorch taking turns
(a tiny run: the machinery, not the speed)."""
import time

from conftest import load_benchmark, run_keeping_threads

from minires.bench.measure import PHASES, PhasedStep, training_step


class Recorder:
    """Stands in for a model, an optimizer and a loss: records the order of the calls, each taking ``pause``."""

    def __init__(self, pause=0.002):
        self.calls, self.pause = [], pause

    def note(self, name, value=None):
        self.calls.append(name)
        time.sleep(self.pause)
        return value

    def zero_grad(self):
        self.note("zero_grad")

    def step(self):
        self.note("optimizer")

    def __call__(self, images):
        return self.note("forward", self)

    def loss(self, output, labels):
        return self.note("loss", self)

    def backward(self):
        self.note("backward")


def test_a_phased_step_runs_the_phases_in_order_and_times_each():
    fake = Recorder()
    step = PhasedStep(fake, fake, images=None, labels=None, loss_fn=fake.loss)
    step()
    assert fake.calls == list(PHASES)
    times = step.timed()
    assert fake.calls == list(PHASES) * 2 and list(times) == list(PHASES)
    assert all(0.002 <= seconds < 0.05 for seconds in times.values())


def test_minires_training_step_is_a_phased_step_that_trains():
    step = training_step("resnet20", 2, "cpu")
    before = step.model.conv1.weight.numpy().copy()
    times = step.timed()
    assert list(times) == list(PHASES) and all(seconds > 0 for seconds in times.values())
    assert not (step.model.conv1.weight.numpy() == before).all()


def test_the_report_gives_each_phase_and_the_difference():
    module = load_benchmark("step_phases")
    ours = {phase: 0.001 * (i + 1) for i, phase in enumerate(PHASES)} | {"step": 0.020}
    theirs = {phase: 0.0005 for phase in PHASES} | {"step": 0.010}
    lines = module.report("resnet20", 2, 3, 1, 2, {1: (ours, theirs)})
    assert lines[1] == "batch | phase | minires | PyTorch | minires - PyTorch"
    assert lines[3] == "1 | forward | 2.00 | 0.50 | +1.50" and lines[-1] == "1 | step | 20.00 | 10.00 | +10.00"
    counted = [{**dict.fromkeys(PHASES, 1.0), "forward": f, "step": s} for f, s in ((1.0, 3.0), (5.0, 1.0), (2.0, 2.0))]
    medians = module.phase_medians(counted)
    assert medians["forward"] == 2.0 and medians["step"] == 2.0 and medians["loss"] == 1.0   # each phase on its own


def test_a_tiny_run_reports_every_phase_of_both(torch_oracle, capsys):
    module = load_benchmark("step_phases")
    assert run_keeping_threads(torch_oracle, module.main, ["--batches", "1", "--threads", "1", "--turns", "1"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[1] for row in rows] == list(PHASES) + ["step"]
    for batch, phase, mine, theirs, difference in rows:
        assert batch == "1" and float(mine) > 0 and float(theirs) > 0
        assert abs(float(mine) - float(theirs) - float(difference)) < 0.011


PHASES_OUTPUT = "results/cpu/2026-12-05-amd-epyc-step-phases.txt"


def test_the_readmes_account_of_the_phases_is_the_committed_output():
    """Every range the README gives from the three runs (the lowest and highest of the runs' medians) is
    the output's: minires', PyTorch's and their difference, at batch 1 and 32."""
    import re
    from conftest import REPO, one_line
    runs = (REPO / PHASES_OUTPUT).read_text().split("== run ")[1:]
    assert len(runs) == 3
    values = {}
    for run in runs:
        for batch, phase, *numbers in re.findall(r"^(\d+) \| (\w+) \| ([\d.]+) \| ([\d.]+) \| ([+-][\d.]+)$", run, re.M):
            values.setdefault((int(batch), phase), []).append([float(n) for n in numbers])

    def span(batch, phase, column, sign=1):
        v = [sign * row[column] for row in values[(batch, phase)]]
        assert len(v) == 3
        return f"{min(v):.2f}-{max(v):.2f}"

    readme = one_line("README.md")
    assert (f"ResNet-20's step on two threads took {span(1, 'step', 0)} ms against PyTorch's {span(1, 'step', 1)}, "
            f"{span(1, 'step', 2)} ms more, of which {span(1, 'forward', 2)} in the forward and {span(1, 'backward', 2)} "
            f"in the backward (the optimizer's step took {span(1, 'optimizer', 2, -1)} ms less)") in readme
    assert (f"a gap of {span(32, 'step', 2)} ms (minires {span(32, 'step', 0)} ms, PyTorch {span(32, 'step', 1)}: "
            f"minires' steps varied the more), {span(32, 'backward', 2)} of it in the backward") in readme


BENCH_32 = "results/cpu/2026-12-05-amd-epyc-2-threads-batch32-numba-rows.md"


def test_the_readmes_count_of_resnet20s_parameters_is_the_models():
    """The README says the optimizer's step makes 59 calls, one per parameter, over 0.27 million values."""
    from conftest import one_line
    from minires import models
    parameters = list(models.get_model("resnet20").parameters())
    assert len(parameters) == 59 and round(sum(p.data.size for p in parameters) / 1e6, 2) == 0.27
    assert "the 59 calls from Python, not the arithmetic on ResNet-20's 0.27 million values" in one_line("README.md")


def test_the_readmes_conv_ratios_at_batch_32_are_the_benchs():
    """The README's layer-by-layer ratios at batch 32 (all convs, the stem and its weight gradient, the strided
    convs, the range of the others, the step) are the committed bench report's."""
    import re
    from conftest import REPO, one_line
    rows = {case.strip(): (fwd, bwd, ratio) for case, fwd, bwd, ratio in re.findall(
        r"^(?:conv|step)\s+(.+?)\s+numba-rows\s+fp32\s+([\d.-]+)\s+([\d.-]+)\s+[\d.]+\s+([\d.]+)",
        (REPO / BENCH_32).read_text(), re.M)}
    torch_stem = re.search(r"^conv\s+conv1 3->16 @32\s+torch\s+fp32\s+[\d.]+\s+([\d.]+)", (REPO / BENCH_32).read_text(), re.M)
    others = [float(rows[c][2]) for c in ("16->16 @32", "32->32 @16", "64->64 @8")]
    readme = one_line("README.md")
    assert (f"minires' 19 convs took {rows['resnet20: all 19 convs'][2]}x PyTorch's time at batch 32") in readme
    assert (f"the stem {rows['conv1 3->16 @32'][2]}x (its weight gradient took {rows['conv1 3->16 @32'][1]} ms "
            f"against {torch_stem.group(1)}), the two strided convs {rows['16->32 @32 s2'][2]}x and "
            f"{rows['32->64 @16 s2'][2]}x, the others {min(others):.2f}-{max(others):.2f}x; the step, in the same run, "
            f"{rows['resnet20 batch 32'][2]}x") in readme
