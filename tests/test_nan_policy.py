"""Non-finite losses and weights never train on silently: --nan-policy stop | skip | continue.

Planted faults: one batch of NaN images (a NaN loss and NaN gradients), an optimizer step that
leaves a NaN in a weight, a forward pass that leaves an Inf in a BatchNorm running variance, a NaN
held-out loss, and a checkpoint whose running variances are NaN.
"""
import json

import numpy as np
import pytest

from minires import backend, optim
from minires.autograd import Tensor
from minires.checkpoint import load_checkpoint, save_checkpoint
from minires.cli import main
from minires.train import Config, NonFiniteError, Trainer, _first_non_finite, read_metrics

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


def _fit_checking_only_the_poisoned_step_leaves(trainer, snapshot):
    """``trainer.fit()``, checking that ``snapshot(trainer)`` (a dict of arrays) is unchanged by the
    poisoned step, the one skipped, and changed by every other; returns fit's result."""
    seen, original_step = [], trainer.train_step

    def step_and_record(x, y):
        before = snapshot(trainer)
        result = original_step(x, y)
        seen.append((trainer.iteration, before, snapshot(trainer)))
        return result

    trainer.train_step = step_and_record
    final = trainer.fit()
    for iteration, before, after in seen:
        unchanged = all(np.array_equal(before[k], after[k]) for k in before)
        assert unchanged == (iteration == POISONED), iteration
    return final


def test_skip_leaves_the_weights_of_that_batch_and_counts_it(tmp_path):
    trainer = _poisoned_trainer(tmp_path, "skip")
    with pytest.warns(RuntimeWarning, match="epoch 2: 1 of its updates skipped"):
        final = _fit_checking_only_the_poisoned_step_leaves(trainer, _weights)
    assert final["skipped_steps"] == 1
    assert [r["skipped_steps"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "epoch"] == [0, 1]
    assert np.isfinite(final["train_loss"]) and np.isfinite(final["train_error"])  # the NaN batch is left out


def test_continue_warns_once_per_epoch_and_counts_the_steps(tmp_path):
    trainer = _poisoned_trainer(tmp_path, "continue")
    with pytest.warns(RuntimeWarning) as caught:
        final = trainer.fit()
    messages = [str(w.message) for w in caught if "minires train" in str(w.message)]
    # iteration 5 makes NaN weights, so iteration 6 is non-finite too: one warning for the step, one count;
    # and the held-out loss of those weights is NaN: the epoch says the model is broken
    assert len(messages) == 3, messages
    assert "iteration 5 (epoch 2): the loss is nan; continuing" in messages[0]
    assert "epoch 2 (iteration 6): the held-out loss is nan; the model is broken" in messages[1]
    assert messages[2].startswith("minires train: epoch 2: 2 of its steps had NaN/Inf values and went on")
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


# ----------------------------------------------------------------------------- BatchNorm statistics, held-out loss
def _buffers(trainer):
    return {name: b.numpy().copy() for name, b in trainer.model.named_buffers()}


def _plant_inf_running_var(trainer, at):
    """Make the forward pass of iteration ``at`` leave an Inf in a BN running variance (loss and gradients finite)."""
    bn = trainer.model.layer1[0].bn1
    forward = bn.forward

    def forward_leaving_inf(x):
        y = forward(x)
        if bn.training and trainer.iteration + 1 == at:
            bn.running_var.data[0] = np.inf
        return y

    bn.forward = forward_leaving_inf


def test_stop_catches_a_non_finite_batchnorm_statistic_before_the_checkpoint(tmp_path):
    trainer = Trainer(Config(out=str(tmp_path), **TINY))
    _plant_inf_running_var(trainer, at=POISONED)
    with pytest.raises(NonFiniteError, match=r"^training stopped at iteration 5 \(epoch 2\): the running statistic "
                                             r"layer1\.0\.bn1\.running_var has NaN or Inf values; the last good "
                                             r"checkpoint is .* \(epoch 1, iteration 3\)"):
        trainer.fit()
    state = load_checkpoint(tmp_path)
    assert state["iteration"] == 3 and all(np.isfinite(a).all() for a in state["model"].values())


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")   # lr 1e6 overflows float32
def test_the_audits_lr_1e6_run_stops_and_keeps_no_broken_checkpoint(tmp_path, capsys):
    """The audit's run: a huge rate makes the BN running variances overflow while the loss is still finite."""
    out = tmp_path / "run"
    code = main(["train", "--model", "resnet8", "--width", "4", "--train-size", "64", "--test-size", "16",
                 "--batch-size", "16", "--epochs", "3", "--lr", "1e6", "--no-progress", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1 and "done:" not in captured.out
    assert "minires: error: NonFiniteError: training stopped at iteration" in captured.err
    if (out / "checkpoint.json").exists():   # whatever checkpoint is kept is a good one
        assert all(np.isfinite(a).all() for a in load_checkpoint(out)["model"].values())
        assert "the last good checkpoint is" in captured.err
    else:
        assert "there is no checkpoint yet" in captured.err


def test_stop_on_a_non_finite_held_out_loss_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(Config(out=str(tmp_path), **TINY))
    evaluate = trainer.evaluate
    trainer.evaluate = lambda: (np.nan, 0.9) if trainer.epoch == 1 else evaluate()
    with pytest.raises(NonFiniteError, match=r"^training stopped after epoch 2 \(iteration 6\): the held-out loss is "
                                             r"nan; the last good checkpoint is .* \(epoch 1, iteration 3\)"):
        trainer.fit()
    assert load_checkpoint(tmp_path)["iteration"] == 3     # epoch 2's broken state was never saved


def test_stop_on_a_non_finite_held_out_loss_of_the_first_epoch_says_why_it_has_no_checkpoint(tmp_path):
    """The first epoch ended, but broken: not "the first is written when the first epoch ends"."""
    trainer = Trainer(Config(out=str(tmp_path), **TINY))
    trainer.evaluate = lambda: (np.nan, 0.9)
    with pytest.raises(NonFiniteError) as error:
        trainer.fit()
    assert str(error.value).startswith("training stopped after epoch 1 (iteration 3): the held-out loss is nan; there "
                                       "is no checkpoint yet (one is written at the end of each epoch whose weights, "
                                       "statistics and held-out loss are finite)")
    assert not (tmp_path / "checkpoint.json").exists()


def test_skip_restores_the_batchnorm_statistics_of_the_skipped_batch(tmp_path):
    trainer = _poisoned_trainer(tmp_path, "skip")
    with pytest.warns(RuntimeWarning, match="1 of its updates skipped"):
        final = _fit_checking_only_the_poisoned_step_leaves(trainer, _buffers)
    assert all(np.isfinite(b).all() for b in _buffers(trainer).values())
    assert np.isfinite(final["test_loss"])


def test_a_run_that_went_on_into_nan_ends_with_an_error_not_a_result(tmp_path, capsys, monkeypatch):
    """--nan-policy continue trains on NaN weights to the end; the command says the run is broken, exit 1."""
    monkeypatch.setattr(Trainer, "_input", _nan_input)
    with pytest.warns(RuntimeWarning):
        code = main(["train", "--model", "resnet8", "--width", "2", "--train-size", "8", "--test-size", "4",
                     "--batch-size", "8", "--epochs", "1", "--no-progress", "--nan-policy", "continue",
                     "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1 and "done:" not in captured.out
    assert captured.err.startswith("minires: error: NonFiniteError: the run is broken, not a result: after epoch 1 ")


def _poison_checkpoint(out):
    """Rewrite the checkpoint in ``out`` with NaN BN running variances (as an old build's skip left them)."""
    state = load_checkpoint(out)
    for key in state["model"]:
        if key.endswith("running_var"):
            state["model"][key] = np.full_like(state["model"][key], np.nan)
    save_checkpoint(out, state)


def test_resuming_a_checkpoint_with_nan_statistics_is_refused_or_ends_in_an_error(tmp_path, capsys):
    Trainer(Config(out=str(tmp_path), **{**TINY, "epochs": 1})).fit()
    _poison_checkpoint(tmp_path)
    with pytest.raises(NonFiniteError, match=r"checkpoint\.json \(epoch 1\) is broken: bn1\.running_var has NaN or Inf"):
        Trainer.resume(tmp_path, epochs=2, progress=False)          # stop, the default
    capsys.readouterr()
    with pytest.warns(RuntimeWarning, match="is broken"), pytest.warns(RuntimeWarning, match="updates skipped"):
        code = main(["train", "--resume", "--out", str(tmp_path), "--epochs", "2", "--nan-policy", "skip",
                     "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1 and "done:" not in captured.out and "the run is broken, not a result" in captured.err


# ----------------------------------------------------------------------------- metrics.jsonl stays strict JSON
def _strict_json(line):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(line, parse_constant=refuse)


def test_metrics_write_non_finite_numbers_as_null_and_read_them_back_as_nan(tmp_path):
    with pytest.warns(RuntimeWarning):
        _poisoned_trainer(tmp_path, "continue").fit()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    epochs = [r for r in map(_strict_json, lines) if r["kind"] == "epoch"]
    assert epochs[-1]["test_loss"] is None and epochs[0]["test_loss"] is not None
    assert np.isnan(read_metrics(tmp_path / "metrics.jsonl")[-1]["test_loss"])
    with pytest.warns(RuntimeWarning):    # a resume rewrites the file (dropping lines after the checkpoint)
        Trainer.resume(tmp_path, epochs=3, progress=False, nan_policy="continue").fit()
    assert all(_strict_json(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines())


def test_the_non_finite_search_names_the_first_bad_array_and_ignores_integers():
    """One test over everything, then the search: the first of several bad arrays, Inf as well as NaN,
    in any dtype and layout; integer arrays (num_batches_tracked) are finite by definition."""
    good = [("count", np.array(3, np.int64)), ("w", np.ones((3, 4), np.float32).T), ("b", np.zeros(2))]
    assert _first_non_finite(good) is None and _first_non_finite([]) is None
    assert _first_non_finite([("count", np.array(7, np.int64))]) is None
    bad = good + [("inf", np.array([1.0, np.inf], np.float32)), ("nan", np.array([np.nan]))]
    assert _first_non_finite(bad) == "inf" and _first_non_finite(bad[:3] + bad[4:]) == "nan"
