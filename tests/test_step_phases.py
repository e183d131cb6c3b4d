"""benchmarks/step_phases.py and the phased training step: each phase timed, minires and PyTorch taking turns
(a tiny run: the machinery, not the speed)."""
import time

from conftest import load_benchmark

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
    from minires.bench.cpu import set_threads
    from minires.cpu import get_num_threads
    threads, ours = torch_oracle.get_num_threads(), get_num_threads()
    try:
        assert module.main(["--batches", "1", "--threads", "1", "--turns", "1"]) == 0
    finally:
        torch_oracle.set_num_threads(threads)
        set_threads(ours)
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[1] for row in rows] == list(PHASES) + ["step"]
    for batch, phase, mine, theirs, difference in rows:
        assert batch == "1" and float(mine) > 0 and float(theirs) > 0
        assert abs(float(mine) - float(theirs) - float(difference)) < 0.011
