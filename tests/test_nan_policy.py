"""Non-finite losses and weights never train on silently: --nan-policy stop | skip | continue.

Planted faults: one batch of NaN images (a NaN loss and NaN gradients), and an optimizer step that
leaves a NaN in a weight.
"""
import numpy as np
import pytest

from minires import backend, optim
from minires.autograd import Tensor
from minires.checkpoint import load_checkpoint
from minires.cli import main
from minires.train import Config, NonFiniteError, Trainer, read_metrics

TINY = dict(model="resnet8", width=2, train_size=24, test_size=4, batch_size=8, epochs=2, eval_batch_size=4,
            progress=False, seed=1)   # 3 iterations per epoch
POISONED = 5                          # the 5th iteration (epoch 2) gets NaN images


@pytest.fixture(autouse=True)
def reference_conv():
    with backend.using("conv2d", "numpy"):
        yield


def _poisoned_trainer(out, policy, at=POISONED):
    trainer = Trainer(Config(out=str(out), nan_policy=policy, **TINY))
    make_input = trainer._input

    def input_with_nan(x):
        return make_input(np.full_like(x, np.nan) if trainer.iteration + 1 == at else x)

    trainer._input = input_with_nan
    return trainer


def _weights(trainer):
    return {name: p.numpy().copy() for name, p in trainer.model.named_parameters()}


def test_stop_names_the_iteration_and_the_last_good_checkpoint(tmp_path):
    trainer = _poisoned_trainer(tmp_path, "stop")
    with pytest.raises(NonFiniteError) as error:
        trainer.fit()
    message = str(error.value)
    assert message.startswith("training stopped at iteration 5 (epoch 2): the loss is nan")
    assert f"the last good checkpoint is {tmp_path / 'checkpoint.json'} (epoch 1, iteration 3)" in message
    assert "--nan-policy skip" in message
    assert load_checkpoint(tmp_path)["iteration"] == 3
    assert all(np.isfinite(w).all() for w in _weights(trainer).values())   # the NaN update was never applied


def test_stop_before_the_first_checkpoint_says_there_is_none(tmp_path):
    with pytest.raises(NonFiniteError, match=r"iteration 2 \(epoch 1\).*there is no checkpoint yet"):
        _poisoned_trainer(tmp_path, "stop", at=2).fit()


def test_skip_leaves_the_weights_of_that_batch_and_counts_it(tmp_path):
    trainer = _poisoned_trainer(tmp_path, "skip")
    seen = []
    original_step = trainer.train_step

    def step_and_record(x, y):
        before = _weights(trainer)
        result = original_step(x, y)
        seen.append((trainer.iteration, before, _weights(trainer)))
        return result

    trainer.train_step = step_and_record
    with pytest.warns(RuntimeWarning, match="epoch 2: 1 of its updates skipped"):
        final = trainer.fit()
    for iteration, before, after in seen:
        unchanged = all(np.array_equal(before[k], after[k]) for k in before)
        assert unchanged == (iteration == POISONED), iteration
    assert final["skipped_steps"] == 1
    assert [r["skipped_steps"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "epoch"] == [0, 1]
    assert np.isfinite(final["train_loss"]) and np.isfinite(final["train_error"])  # the NaN batch is left out


def test_continue_warns_once_per_epoch_and_counts_the_steps(tmp_path):
    trainer = _poisoned_trainer(tmp_path, "continue")
    with pytest.warns(RuntimeWarning) as caught:
        final = trainer.fit()
    messages = [str(w.message) for w in caught if "minires train" in str(w.message)]
    # iteration 5 makes NaN weights, so iteration 6 is non-finite too: one warning for the step, one count
    assert len(messages) == 2, messages
    assert "iteration 5 (epoch 2): the loss is nan; continuing" in messages[0]
    assert messages[1].startswith("minires train: epoch 2: 2 of its steps had NaN/Inf values and went on")
    assert final["epoch"] == 2 and final["skipped_steps"] == 0 and final["non_finite_steps"] == 2
    assert [r["non_finite_steps"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "epoch"] == [0, 2]


def test_a_nan_weight_after_a_step_stops_the_run(tmp_path, monkeypatch):
    original_step = optim.SGD.step

    def step_leaving_a_nan(self):
        original_step(self)
        if trainer.iteration + 1 == 2:
            self.param_groups[0]["params"][0].data[0] = np.nan

    monkeypatch.setattr(optim.SGD, "step", step_leaving_a_nan)
    trainer = Trainer(Config(out=str(tmp_path), **TINY))
    with pytest.raises(NonFiniteError, match="iteration 2 .*after the update, conv1.weight has NaN or Inf values"):
        trainer.fit()


@pytest.mark.parametrize("gradients", [True, False], ids=["gradient", "weight"])
def test_the_message_names_the_parameter_that_is_not_finite(tmp_path, gradients):
    """One check covers every parameter; the message names the one with the NaN, here not the first."""
    trainer = Trainer(Config(out=str(tmp_path), **TINY))
    params = dict(trainer.model.named_parameters())
    for p in params.values():
        p.grad = Tensor(np.zeros_like(p.data))
    assert trainer._non_finite(None, gradients) is None
    name = list(params)[-2]
    (params[name].grad if gradients else params[name]).data.flat[0] = np.inf
    assert trainer._non_finite(None, gradients) == \
        f"{'the gradient of ' if gradients else 'after the update, '}{name} has NaN or Inf values"


def test_the_cli_reports_it_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Trainer, "_input", _nan_input)
    code = main(["train", "--model", "resnet8", "--width", "2", "--train-size", "8", "--test-size", "4",
                 "--batch-size", "8", "--epochs", "1", "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("minires: error: NonFiniteError: training stopped at iteration 1 (epoch 1): the loss is nan")


def _nan_input(trainer, x):
    return Tensor(np.full(x.shape, np.nan, trainer.cfg.dtype))
