"""benchmarks/torch_train.py, PyTorch training minires' default recipe: on a tiny float64 run its
weights and held-out loss follow minires' own training step for step (so the data, the initial
weights, SGD, the schedule and the evaluation are the same), and its command prints its numbers."""
import importlib.util
from pathlib import Path

import pytest

from conftest import assert_close

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_train.py"
# ResNet-8, 24 images in batches of 8 for 2 epochs: 6 iterations, the rate divided by 10 after 3 and 4 (round(1.5 * 3))
TINY = dict(model="resnet8", train_size=24, test_size=10, batch_size=8, epochs=2, seed=3)


@pytest.fixture(scope="module")
def torch_train(torch_oracle):
    """The script as a module, PyTorch on one thread meanwhile (float64 on two shared cores crawls)."""
    spec = importlib.util.spec_from_file_location("torch_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch_oracle.get_num_threads()
    torch_oracle.set_num_threads(1)
    yield module
    torch_oracle.set_num_threads(threads)


def test_the_torch_model_starts_from_minires_weights(torch_train, tmp_path, torch_oracle):
    import minires as mr
    trainer = torch_train.minires_recipe(str(tmp_path), dtype="float64", **TINY)
    model = torch_train.torch_model(trainer)
    x, _ = next(iter(trainer.test_loader))
    for train_mode in (True, False):
        model.train(train_mode)
        trainer.model.train(train_mode)
        assert_close(model(torch_oracle.from_numpy(x).double()), trainer.model(mr.tensor(x.astype("float64"))), 1e-10)


def test_torch_follows_minires_training_step_for_step(torch_train, tmp_path):
    ours = torch_train.minires_recipe(str(tmp_path / "minires"), dtype="float64", **TINY)
    theirs = torch_train.minires_recipe(str(tmp_path / "torch"), dtype="float64", **TINY)
    model = torch_train.torch_model(theirs)
    assert ours.total_iterations == 6 and ours.scheduler.milestones == [3, 4]
    expected = ours.fit()
    lines = []
    final = torch_train.train(model, theirs, report=lines.append)
    assert (final["epoch"], final["iteration"]) == (2, 6) and len(lines) == 2
    for (name, value), weight in zip(ours.model.state_dict().items(), model.state_dict().values()):
        if name.endswith("num_batches_tracked"):
            assert int(weight) == int(value) == 6, name
        else:
            assert_close(weight, value, 1e-8)
    for key in ("test_loss", "test_error", "train_error"):
        assert final[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key


def test_only_the_resnets_with_a_pytorch_twin_are_accepted(torch_train, tmp_path):
    for settings in (dict(model="plain20"), dict(model="resnet20", width=8)):
        with pytest.raises(ValueError, match="only the CIFAR ResNets of the paper's widths"):
            torch_train.minires_recipe(str(tmp_path), **settings)


def test_the_command_prints_the_recipe_accuracy_and_wall_time(torch_train, capsys):
    assert torch_train.main(["--model", "resnet8", "--threads", "1", "--train-size", "16", "--test-size", "10",
                             "--batch-size", "8", "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "1 threads: resnet8 on synthetic (16 training images), 2 iterations of batch 8, lr 0.1" in out
    assert "momentum 0.9, weight decay 0.0001" in out
    final = out.strip().splitlines()[-1]
    assert final.startswith("PyTorch: ") and "held-out accuracy after 1 epochs; wall time" in final
