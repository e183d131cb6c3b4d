"""minires.experiments: every experiment runs end to end on tiny settings and writes its JSON and PNGs.

Tiny settings (width 2, a few iterations, a few hundred images) keep the file well under two
minutes; they check the plumbing and facts that hold at any size (parameter counts of plain/ResNet
twins, the number of 3x3 layers, which blocks a plain net can lose), not the paper's effects, which
need the ``--quick`` settings (see each experiment's docstring).
"""
import importlib
import json
import re
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from conftest import one_line

import minires as mr
import minires.functional as F
from minires.cli import main
from minires.experiments import EXPERIMENTS, gradnorms, run_experiment
from minires.experiments import common
from minires.models import cifar_resnet
from minires.experiments.common import FAILS, HOLDS, UNCLEAR, build_model, load_data, smooth

LN10 = 2.302585092994046  # chance loss for 10 balanced classes: -ln(1/10)


def fake_run(error: float = 0.1, loss: float = 0.5, grad: float = 1.0, diverged: bool = False, finite: bool = True,
             under_trained_above=common.UNDER_TRAINED, chance_margin=common.CHANCE_MARGIN, **record) -> dict:
    """A planted training run: what common.train returns, with its health assessed as train does."""
    curves = {"final_train_error": error, "final_train_loss": loss, "final_test_error": error, "diverged": diverged,
              "weight_grad_max": grad, "weights_finite": finite, "train_error": [error] * 10,
              "test_iterations": [10], "test_error": [error], "seconds": 1.0, "params": 100}
    curves["health"] = common.assess_health(curves, 10, under_trained_above, chance_margin)
    return {**curves, **record}

TINY = ["--quick", "--width", "2", "--iterations", "4", "--batch-size", "32", "--n-train", "128", "--n-test", "64",
        "--no-progress"]
SHAPE = {"degradation": ["--depths", "8,14", "--eval-every", "2"], "gradnorms": ["--depths", "8,14"],
         "responses": ["--depths", "8,14"], "lesion": ["--depth", "14"],
         "shortcuts": ["--depth", "8", "--eval-every", "2"]}
FIGURES = {"degradation": ["degradation.png"],
           "gradnorms": ["gradnorms_init.png", "gradnorms_training.png", "gradnorms_weights.png"],
           "responses": ["responses.png"], "lesion": ["lesion.png"], "shortcuts": ["shortcuts.png"]}


@pytest.fixture(scope="module", autouse=True)
def reference_conv():
    """The NumPy reference conv2d: these tests check the experiments' plumbing, not conv speed, and the
    reference is the quickest on the tiny 2-channel layers (no thread start-up per call)."""
    with mr.backend.using("conv2d", "numpy"):
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory, reference_conv):
    """Run every experiment once through the CLI; ``{name: (results, folder)}``."""
    done = {}
    for name in EXPERIMENTS:
        folder = tmp_path_factory.mktemp(name)
        assert main(["experiment", name, *TINY, *SHAPE[name], "--out", str(folder)]) == 0
        done[name] = json.loads((folder / "results.json").read_text()), folder
    return done


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_experiment_writes_results_summary_and_figures(runs, name):
    results, folder = runs[name]
    assert results["experiment"] == name and results["mode"] == "quick" and results["settings"]["width"] == 2
    assert (folder / "summary.md").read_text().count("|") > 10
    for figure in FIGURES[name]:
        assert (folder / figure).read_bytes()[:4] == b"\x89PNG"


def test_degradation_trains_plain_and_residual_twins_of_equal_size(runs):
    results, _ = runs["degradation"]
    assert sorted(results["runs"]) == ["plain14", "plain8", "resnet14", "resnet8"]
    for depth in (8, 14):
        plain, res = results["runs"][f"plain{depth}"], results["runs"][f"resnet{depth}"]
        assert plain["params"] == res["params"]                # option A adds no parameters (paper sec. 4.2)
        assert len(plain["train_error"]) == 4 and plain["test_iterations"] == [2, 4]
    assert [c["claim"].split(":")[0] for c in results["claims"]] == [
        "deeper plain nets have higher training error (Fig. 6 left)",
        "deeper ResNets have lower training error (Fig. 6 right)"]
    assert set(results["health"]) == set(results["runs"])


def test_nets_trained_in_worker_processes_equal_those_trained_here():
    """map_nets forks workers with one thread each; every net seeds its own weights and data order,
    so with one thread here too each net's per-layer gradient norms after a few steps (sensitive to
    every weight) are the same to the bit, and the nets come back in the same order."""
    from minires.cpu import threads
    data = load_data("synthetic", n_train=96, n_test=32)
    settings = dict(gradnorms.QUICK, depths=(8, 14), width=2, iterations=3, batch_size=32)
    before = threads.get_num_threads()
    threads.set_num_threads(1)
    try:
        here = gradnorms.run(data, settings, seed=5, progress=False, workers=1)
    finally:
        threads.set_num_threads(before)
    forked = gradnorms.run(data, settings, seed=5, progress=False, workers=2)
    assert list(forked["nets"]) == list(here["nets"])
    assert list(here["nets"])[:4] == ["plain8", "plain14", "resnet8", "resnet14"]
    for name, net in here["nets"].items():
        np.testing.assert_array_equal(forked["nets"][name]["weight_grad_norm"], net["weight_grad_norm"])
        np.testing.assert_array_equal(forked["nets"][name]["act_grad_norm"], net["act_grad_norm"])


def test_workers_fork_cleanly_after_the_parent_used_its_cpu_threads(monkeypatch):
    """The parent's thread pool (made by a big enough op) does not survive fork; the workers set
    their own thread count, and the parent's pool still works afterwards."""
    from minires.cpu import threads
    from minires.experiments import degradation
    from minires import backend
    monkeypatch.setattr(threads, "MIN_PARALLEL_PASS", 0)
    with backend.using("relu", "numpy-threads"):        # the NumPy passes run on the pool (Numba's run as regions)
        F.relu(mr.tensor(np.ones((4, 2))))
    assert threads._executor is not None or threads.get_num_threads() == 1
    data = load_data("synthetic", n_train=64, n_test=32)
    settings = dict(degradation.QUICK, depths=(8, 14), width=2, iterations=2, batch_size=32, eval_every=2)
    results = degradation.run(data, settings, progress=False, workers=2)
    assert list(results["runs"]) == ["plain8", "plain14", "resnet8", "resnet14"]
    np.testing.assert_array_equal(F.relu(mr.tensor(np.array([[-1.0], [2.0]]))).numpy(), [[0.0], [2.0]])


def test_degradation_with_one_depth_cannot_tell():
    from minires.experiments import degradation
    runs = {f"{kind}8": fake_run(depth=8, residual=kind == "resnet", error=0.3) for kind in ("plain", "resnet")}
    assert [c["verdict"] for c in degradation.claims(runs)] == [UNCLEAR, UNCLEAR]
    assert all(c["why"] == "nothing to compare at this setting" for c in degradation.claims(runs))


def test_responses_has_one_std_per_3x3_conv(runs):
    results, _ = runs["responses"]
    for name, net in results["nets"].items():
        assert len(net["std"]) == net["depth"] - 1            # 6n+2 layers = 6n+1 3x3 convs + the fc
        assert all(s > 0 for s in net["std"])


def test_lesion_deletes_every_resnet_block_but_only_shape_keeping_plain_blocks(runs):
    results, _ = runs["lesion"]
    res, plain = results["nets"]["resnet14"], results["nets"]["plain14"]
    assert res["downsampling"] == [False, False, True, False, True, False]
    assert all(e is not None for e in res["lesioned_error"])
    assert [e is None for e in plain["lesioned_error"]] == res["downsampling"]


def test_shortcut_projections_add_parameters_in_order(runs):
    results, _ = runs["shortcuts"]
    params = [results["options"][k]["params"] for k in "ABC"]
    assert params[0] < params[1] < params[2]
    # B: 1x1 projections (+BN) where the shape changes: 2->4 and 4->8 channels
    assert params[1] - params[0] == (2 * 4 + 2 * 4) + (4 * 8 + 2 * 8)


def test_the_time_per_iteration_is_the_runs_evaluations_included_as_its_column_says(monkeypatch):
    from minires.experiments import shortcuts
    data = load_data("synthetic", n_train=16, n_test=8)
    evaluate = common.evaluate

    def slow_evaluate(*args):
        time.sleep(0.5)
        return evaluate(*args)

    monkeypatch.setattr(common, "evaluate", slow_evaluate)
    settings = dict(shortcuts.QUICK, depth=8, width=2, iterations=4, batch_size=8, eval_every=2)
    _, option = shortcuts.train_option(data, {"settings": settings, "option": "A", "seed": 0}, progress=False)
    assert option["seconds_per_iteration"] >= 2 * 0.5 / 4            # two evaluations over four iterations
    summary = [{"option": "A", "params": 1, "train_error": 1.0, "test_error": 1.0, "ms_per_iteration": 1.0,
                "health": "ok"}]
    assert "| ms / iteration, evaluations included |" in shortcuts.report(
        {"summary": summary, "settings": settings, "data": "synthetic", "claims": [], "health": {}})


def test_gradnorms_step_zero_is_the_gradient_of_the_first_batch():
    data = load_data("synthetic", n_train=64, n_test=32)
    settings = dict(gradnorms.QUICK, depths=(8,), width=2, iterations=2, batch_size=32)
    results = gradnorms.run(data, settings, seed=3, progress=False)
    model = build_model(8, data, residual=False, width=2, seed=3)
    x, y = next(iter(data.loaders(32, 3)[0]))
    F.cross_entropy(model(mr.tensor(x)), y).backward()
    convs = [p for name, p in model.named_parameters() if name.endswith("weight") and p.ndim == 4]
    expected = [np.linalg.norm(p.grad.numpy().astype(np.float64)) for p in convs]
    np.testing.assert_allclose(results["nets"]["plain8"]["weight_grad_norm"][0], expected, rtol=1e-6)
    assert results["nets"]["plain8-noBN"]["lr"] == settings["lr_no_bn"]


def test_experiments_run_on_mnist_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 32)):
        for kind, shape in (("images-idx3", (n, 28, 28)), ("labels-idx1", (n,))):
            array = rng.integers(0, 256 if kind.startswith("images") else 10, shape)
            header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in shape)
            (tmp_path / f"{prefix}-{kind}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())
    results, folder = run_experiment("lesion", mode="quick", data="mnist", data_dir=tmp_path, out=tmp_path / "run",
                                     progress=False, depth=8, width=2, iterations=2, batch_size=16)
    assert "(1, 28, 28)" in results["data"] and (folder.path / "lesion.png").exists()
    # the quick mode's 10,000 images mean "at most"; asked for by name, more than the files hold is refused
    for key, asked, message in (("n_train", 65, "--n-train 65: mnist: 64 training"),
                                ("n_test", 33, "--n-test 33: mnist: 64 training / 32 test")):
        with pytest.raises(ValueError, match=message):
            run_experiment("lesion", mode="quick", data="mnist", data_dir=tmp_path, out=tmp_path / key,
                           progress=False, depth=8, width=2, iterations=2, batch_size=16, **{key: asked})
        assert not (tmp_path / key).exists()            # refused before the run folder is made


def test_a_run_records_what_computed_it(tmp_path):
    """results.json and summary.md name the versions and each op's CPU implementation, as chosen when
    the run started (a student's ``backend.using`` included): two environments give a seed's run
    only up to rounding."""
    import importlib.util
    with mr.backend.using("relu", "numpy"):
        results, folder = run_experiment("lesion", mode="quick", out=tmp_path / "run", progress=False, depth=8,
                                         width=2, iterations=2, batch_size=16, n_train=64, n_test=32)
    env = json.loads((folder.path / "results.json").read_text())["environment"]
    assert env["cpu_implementations"] == dict(mr.backend.defaults("cpu"), relu="numpy") != mr.backend.defaults("cpu")
    assert env["numpy"] == np.__version__ and (env["numba"] is None) == (importlib.util.find_spec("numba") is None)
    summary = (folder.path / "summary.md").read_text()
    assert f"Computed with Python {env['python']}, NumPy {np.__version__}, " in summary
    assert f"conv2d {env['cpu_implementations']['conv2d']}, relu numpy, sgd numpy." in summary   # in op order


def test_bad_requests_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="no setting depth;"):
        run_experiment("degradation", out=tmp_path, depth=20)
    with pytest.raises(ValueError, match="--data-dir"):
        run_experiment("lesion", data="cifar10", out=tmp_path)
    with pytest.raises(SystemExit):
        main(["experiment", "nonsense"])
    with pytest.raises(ValueError, match="no standard settings; it has quick, full"):
        run_experiment("degradation", mode="standard", out=tmp_path)
    with pytest.raises(SystemExit):
        main(["experiment", "responses", "--quick", "--standard"])


def test_a_warm_up_that_covers_the_whole_run_is_said(tmp_path, capsys):
    """--quick's 100 warm-up iterations with --iterations 4: every net trains at a tenth of its rate,
    which the run says before it starts (not refused: a short run of the machinery is still useful)."""
    run_experiment("shortcuts", out=tmp_path / "short", progress=False, depth=8, width=2, iterations=4,
                   batch_size=8, n_train=16, n_test=8, eval_every=2)          # shortcuts has no warm-up
    assert "warm-up" not in capsys.readouterr().out
    run_experiment("degradation", out=tmp_path / "covered", progress=False, depths=(8,), width=2, iterations=4,
                   batch_size=8, n_train=16, n_test=8, eval_every=2)
    assert ("the warm-up (100 iterations at a tenth of the rate) covers all 4 iterations, so every net trains at "
            "a tenth of its rate throughout") in capsys.readouterr().out


def test_smooth_is_a_trailing_moving_average():
    np.testing.assert_allclose(smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])


# ----------------------------------------------------------------------------- run health
@pytest.mark.parametrize("planted, status", [
    (dict(), "ok"),
    (dict(error=0.6, loss=1.5), "under-trained"),                  # above the 50% level, loss below chance
    (dict(grad=0.0), "dead"),                                      # every weight gradient exactly zero
    (dict(error=0.9, loss=LN10), "dead"),                          # loss at chance
    (dict(error=0.85, loss=LN10 - 0.05), "dead"),                  # within the 0.1-nat margin of chance
    (dict(error=0.85, loss=LN10 - 0.1), "dead"),                   # not below chance minus the margin: at it
    (dict(error=0.85, loss=LN10 - 0.15), "under-trained"),         # below chance by more than the margin
    (dict(loss=float("nan")), "diverged"),
    (dict(diverged=True), "diverged"),
    (dict(finite=False), "diverged"),
    (dict(error=0.9, loss=1.9, under_trained_above=None), "ok"),   # training error not judged
    (dict(error=0.9, loss=LN10, under_trained_above=None, chance_margin=None), "ok"),   # a short run: nor the loss
    (dict(grad=0.0, under_trained_above=None, chance_margin=None), "dead"),             # zero gradients still count
])
def test_assess_health_flags_each_planted_case(planted, status):
    assert fake_run(**planted)["health"]["status"] == status


def test_a_net_with_zero_weights_is_dead_and_a_huge_rate_diverges():
    """Real tiny runs: all weights zero give zero weight gradients forever (the loss stays at chance);
    a learning rate of 1e6 without BN sends the loss to Inf/NaN."""
    data = load_data("synthetic", n_train=64, n_test=32)
    zeroed = build_model(8, data, width=2)
    for p in zeroed.parameters():
        if p.ndim > 1:
            p.data[...] = 0
    dead = common.train(zeroed, data, 3, batch_size=32, progress=False)
    assert dead["weight_grad_max"] == 0 and dead["health"]["status"] == "dead"
    assert "every weight gradient is exactly zero" in dead["health"]["reason"]
    wild = common.without_batch_norm(build_model(8, data, residual=False, width=2))
    with np.errstate(over="ignore", invalid="ignore"):
        diverged = common.train(wild, data, 20, batch_size=32, lr=1e6, progress=False)
    assert diverged["diverged"] and diverged["health"]["status"] == "diverged"


def planted_degradation(plain56_error=0.7, resnet56_error=0.05, **replaced) -> dict:
    """Degradation results over planted runs (every net healthy unless ``replaced`` by another)."""
    from minires.experiments import degradation
    runs = {"plain20": fake_run(0.15, depth=20, residual=False),
            "plain56": fake_run(plain56_error, 1.5, depth=56, residual=False),
            "resnet20": fake_run(0.10, depth=20, residual=True),
            "resnet56": fake_run(resnet56_error, depth=56, residual=True)}
    runs.update(replaced)
    results = {"data": "planted", "settings": {"width": 2, "iterations": 10, "batch_size": 8}, "runs": runs,
               "summary": degradation.summary(runs), "claims": degradation.claims(runs),
               "health": {name: r["health"] for name, r in runs.items()}, "seed": 0}
    return json.loads(json.dumps(results))


def test_flags_reach_the_table_the_json_the_summary_and_the_figure():
    from minires.experiments import degradation
    results = planted_degradation(
        resnet20=fake_run(0.9, LN10, grad=0.0, depth=20, residual=True),
        resnet56=fake_run(0.9, float("nan"), diverged=True, depth=56, residual=True))
    assert results["health"]["resnet20"]["status"] == "dead" and results["health"]["resnet56"]["status"] == "diverged"
    assert results["health"]["plain56"]["status"] == "under-trained"
    text = degradation.report(results)
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in text.splitlines()
            if line.startswith("| plain") or line.startswith("| resnet")}
    assert rows == {"plain20": "ok", "plain56": "under-trained", "resnet20": "dead", "resnet56": "diverged"}
    assert "Run health: 3 of 4 nets flagged:" in text
    assert "**DEAD**: resnet20 (every weight gradient is exactly zero)" in text and "it learned nothing" in text
    assert "**DIVERGED**: resnet56" in text and "became NaN/Inf" in text
    assert "**UNDER-TRAINED**: plain56 (final training error 70.0% > 50%)" in text and "has not fit" in text
    figure = degradation.plot(results)["degradation.png"]
    labels = [t.get_text() for ax in figure.axes for t in ax.get_legend().get_texts()]
    assert "ResNet-20 [DEAD]" in labels and "ResNet-56 [DIVERGED]" in labels and "plain-56 [UNDER-TRAINED]" in labels
    assert any("resnet20: DEAD" in t.get_text() for t in figure.texts)
    # the ResNet claim cannot be read off a dead and a diverged net; the plain claim still can
    plain, resnet = results["claims"]
    assert plain["verdict"] == HOLDS
    assert resnet["verdict"] == UNCLEAR and "resnet20 is dead, resnet56 is diverged" in resnet["why"]


def test_the_line_printed_as_each_net_finishes_flags_an_unhealthy_net(monkeypatch, capsys):
    from minires.experiments import degradation
    data = load_data("synthetic", n_train=64, n_test=32)
    settings = dict(degradation.QUICK, width=2)
    for planted, flag in ((fake_run(0.9, float("nan"), diverged=True), "[DIVERGED]"), (fake_run(), "")):
        monkeypatch.setattr(degradation, "train", lambda *args, **kwargs: planted)
        degradation.train_net(data, {"depth": 8, "residual": True, "settings": settings, "seed": 0})
        line = capsys.readouterr().out.strip()
        assert line.startswith("resnet8: train error  90.0%" if flag else "resnet8: train error  10.0%")
        assert line.endswith(flag) and ("[" in line) == bool(flag)


def test_the_degradation_figure_names_the_seed_only_when_it_is_known():
    """``degradation.run`` (the Python route) returns no seed; its figure must not call the run seed 0."""
    from minires.experiments import degradation
    results = planted_degradation()
    assert degradation.plot(dict(results, seed=3))["degradation.png"]._suptitle.get_text().endswith(", seed 3")
    del results["seed"]
    assert "seed" not in degradation.plot(results)["degradation.png"]._suptitle.get_text()


def test_a_summary_says_which_nets_an_interrupted_attempt_trained():
    """The wall and CPU time of a resumed run add up its attempts, and an interrupted attempt's worker
    processes' CPU time is lost: the summary says so, and how many nets that attempt trained."""
    from minires.experiments import degradation
    timed = dict(planted_degradation(), mode="quick", wall_seconds=300.0, cpu_seconds=500.0, cores=2,
                 load_average=1.0)
    assert "interrupted attempt" not in degradation.report(timed)
    text = " ".join(degradation.report(dict(timed, reused_nets=2)).split())
    assert ("2 of the 4 nets were trained by an earlier, interrupted attempt of this run: the times include that "
            "attempt up to its last finished net, but not the CPU time of its worker processes") in text


def test_what_dead_means_names_only_the_rules_the_run_applied():
    """A short run (gradnorms) is not judged on its loss: its summary must not define "dead" by the loss."""
    short = {"resnet8": fake_run(grad=0.0, under_trained_above=None, chance_margin=None)["health"],
             "plain8": fake_run(under_trained_above=None, chance_margin=None)["health"]}
    notes = common.health_notes(short)
    assert "Meaning: every weight gradient was zero at the last step: it learned nothing" in notes
    assert "chance" not in notes
    trained = {"resnet8": fake_run(grad=0.0)["health"], "plain8": fake_run(chance_margin=0.2)["health"]}
    assert ("Meaning: every weight gradient was zero at the last step, or its final training loss was not below "
            "chance (ln of the number of classes, minus 0.1 / 0.2 nats): it learned nothing") in common.health_notes(trained)


def test_a_healthy_run_says_so():
    from minires.experiments import degradation
    results = planted_degradation(plain56_error=0.3)
    assert ("Run health: no net flagged (finite, nonzero weight gradients, final loss below chance, final "
            "training error at most 50%)") in degradation.report(results)
    assert not any("Flagged" in t.get_text() for t in degradation.plot(results)["degradation.png"].texts)


# ----------------------------------------------------------------------------- verdicts
def test_compare_needs_a_gap_beyond_the_noise_to_decide():
    assert common.compare(("a", 1.0), ("b", 3.0), 1.0)["verdict"] == HOLDS
    assert common.compare(("a", 3.0), ("b", 1.0), 1.0)["verdict"] == FAILS
    assert common.compare(("a", 1.0), ("b", 1.9), 1.0)["verdict"] == UNCLEAR
    assert common.compare(("a", float("nan")), ("b", 5.0), 1.0)["verdict"] == UNCLEAR


@pytest.mark.parametrize("plain56, resnet56, verdicts", [
    (0.70, 0.03, [HOLDS, HOLDS]),        # the paper's picture: ResNet-56 7 points below ResNet-20
    (0.15, 0.30, [UNCLEAR, FAILS]),      # plain-56 = plain-20; ResNet-56 20 points worse than ResNet-20
    (0.05, 0.12, [FAILS, UNCLEAR]),      # plain-56 better by 10 points; ResNets 2 points apart (noise: 5)
])
def test_degradation_verdicts_follow_the_planted_errors(plain56, resnet56, verdicts):
    assert [c["verdict"] for c in planted_degradation(plain56, resnet56)["claims"]] == verdicts


def test_degradation_summary_states_claims_verdicts_and_noise():
    from minires.experiments import degradation
    text = degradation.report(planted_degradation(0.15, 0.30))
    assert "| deeper ResNets have lower training error (Fig. 6 right) | **does not hold**" in text
    assert "ResNet-56 30% vs ResNet-20 10%" in text
    assert "a stated tolerance of 5 points of training error" in text


def planted_responses(means: dict, **health) -> list[dict]:
    from minires.experiments import responses
    nets = {}
    for name, mean in means.items():
        run = health.get(name) or fake_run()
        nets[name] = {**run, "depth": int("".join(filter(str.isdigit, name))), "residual": name.startswith("resnet"),
                      "std": [mean - 0.1, mean + 0.1], "bn_scale": [1.0, 1.0]}
    return responses.claims(nets)


def test_responses_verdicts():
    paper = dict(plain20=1.3, plain56=1.6, resnet20=0.9, resnet56=0.7, resnet110=0.5)
    assert [c["verdict"] for c in planted_responses(paper)] == [HOLDS, HOLDS]
    at_init = dict(plain20=1.09, plain56=2.56, resnet20=1.06, resnet56=1.00, resnet110=1.00)   # the run
    assert [c["verdict"] for c in planted_responses(at_init)] == [UNCLEAR, UNCLEAR]   # ResNet-20 near plain-20
    reversed_ = dict(plain20=0.8, plain56=0.9, resnet20=1.0, resnet56=1.2, resnet110=1.4)
    assert [c["verdict"] for c in planted_responses(reversed_)] == [FAILS, FAILS]
    untrained = planted_responses(paper, resnet110=fake_run(0.6, 1.8))
    assert untrained[1]["verdict"] == UNCLEAR and "resnet110 is under-trained" in untrained[1]["why"]


def test_gradnorms_verdict_fails_on_a_vanishing_gradient():
    def nets(ratio):
        act = [[ratio, 1.0, 1.0]]
        record = dict(batch_norm=True, steps=[0], act_grad_norm=act, weight_grad_norm=act, depth=8)
        return {"plain8": fake_run(**record, residual=False), "resnet8": fake_run(**record, residual=True)}
    assert gradnorms.claims(nets(3.0))[0]["verdict"] == HOLDS
    assert gradnorms.claims(nets(1e-3))[0]["verdict"] == FAILS            # three decades down
    assert gradnorms.claims(nets(0.1))[0]["verdict"] == UNCLEAR           # right at the one-decade bound


def test_gradnorms_says_why_a_curve_is_missing():
    """A net whose gradients became NaN is not labelled "all zero" in the figure, nor its NaN ratio read as
    "no gradient" in the summary; a net whose gradients are all zero is."""
    nan, zero = [[float("nan")] * 3], [[0.0] * 3]
    nets = {f"plain8{suffix}": fake_run(loss=loss, diverged=diverged, grad=grad, batch_norm=batch_norm, residual=False,
                                        depth=8, steps=[0], act_grad_norm=norms, weight_grad_norm=norms, lr=0.1,
                                        final_train_loss=loss)
            for suffix, batch_norm, norms, loss, diverged, grad in (("", True, nan, float("nan"), True, 1.0),
                                                                    ("-noBN", False, zero, LN10, False, 0.0))}
    results = {"data": "planted", "settings": {"width": 2, "iterations": 1}, "nets": nets,
               "summary": gradnorms.summary(nets), "claims": gradnorms.claims(nets),
               "health": {name: r["health"] for name, r in nets.items()}}
    labels = [t.get_text() for ax in gradnorms.plot(results)["gradnorms_init.png"].axes if ax.get_legend()
              for t in ax.get_legend().get_texts()]
    not_drawable = "not drawable on a log scale, marked x at the bottom"
    assert labels == [f"depth 8 [DIVERGED] (all NaN/Inf: {not_drawable})", f"depth 8 [DEAD] (all zero: {not_drawable})"]
    assert "A NaN ratio means the last conv got no gradient at all, or a gradient was NaN/Inf" in gradnorms.report(results)


def test_gradnorms_names_the_layers_whose_gradient_a_log_scale_cannot_show():
    """A curve with one conv layer's gradient exactly zero (a dead layer) is drawn without it, and its label
    names that layer by number, not by its position as a fraction of the depth; the other curve is untouched."""
    nets = {"plain8": fake_run(loss=1.0, diverged=False, grad=1.0, batch_norm=True, residual=False, depth=8, steps=[0],
                               act_grad_norm=[[0.5, 0.0, 0.25]], weight_grad_norm=[[0.5, 0.5, 0.5]], lr=0.1,
                               final_train_loss=1.0)}
    results = {"data": "planted", "settings": {"width": 2, "iterations": 1}, "nets": nets,
               "summary": gradnorms.summary(nets), "claims": gradnorms.claims(nets),
               "health": {name: r["health"] for name, r in nets.items()}}
    figures = gradnorms.plot(results)
    [init_axes] = [ax for ax in figures["gradnorms_init.png"].axes if ax.get_legend()]
    assert [t.get_text() for t in init_axes.get_legend().get_texts()] == [
        "depth 8 (conv layer 2 zero: not drawable on a log scale, marked x at the bottom)"]
    [weights_axes] = [ax for ax in figures["gradnorms_weights.png"].axes if ax.get_legend()]
    assert [t.get_text() for t in weights_axes.get_legend().get_texts()] == ["step 0"]


def test_lesion_and_shortcut_verdicts_fail_when_the_planted_errors_say_so():
    from minires.experiments import lesion, shortcuts
    def lesion_nets(res_rise, plain_rise):
        return {name: fake_run(label=name, residual=name == "ResNet", downsampling=[False, False],
                               baseline_error=0.1, lesioned_error=[0.1 + rise, 0.1 + rise])
                for name, rise in (("ResNet", res_rise), ("plain", plain_rise))}
    assert [c["verdict"] for c in lesion.claims(lesion_nets(0.0, 0.6), 1000)] == [HOLDS, HOLDS]
    assert [c["verdict"] for c in lesion.claims(lesion_nets(0.3, 0.1), 1000)] == [FAILS, FAILS]
    assert [c["verdict"] for c in lesion.claims(lesion_nets(0.05, 0.07), 1000)] == [UNCLEAR, UNCLEAR]
    options = {k: fake_run(e) for k, e in zip("ABC", (0.10, 0.20, 0.30))}     # projections make it worse
    assert shortcuts.claims(options, 1000)[0]["verdict"] == FAILS
    options = {k: fake_run(e) for k, e in zip("ABC", (0.30, 0.20, 0.10))}
    assert shortcuts.claims(options, 1000)[0]["verdict"] == HOLDS
    options = {k: fake_run(e) for k, e in zip("ABC", (0.110, 0.105, 0.100))}  # 0.5 points apart, noise 3.2
    claim = shortcuts.claims(options, 1000)[0]
    assert claim["verdict"] == UNCLEAR and "3.2 points of test error" in claim["noise"]


def test_the_resnet_lesion_claim_rests_on_the_resnet_alone():
    """An untrained plain twin (plain-110 at the full settings stays above 60% error) leaves the ResNet's
    own claim readable; only the comparison with the plain net cannot be made."""
    from minires.experiments import lesion
    nets = {name: fake_run(error, loss, label=name, residual=name == "ResNet", downsampling=[False, False],
                           baseline_error=0.1, lesioned_error=[0.1, 0.1])
            for name, error, loss in (("ResNet", 0.1, 0.5), ("plain", 0.7, 1.5))}
    assert nets["plain"]["health"]["status"] == "under-trained"
    barely, versus_plain = lesion.claims(nets, 1000)
    assert barely["verdict"] == HOLDS and barely["readable"]
    assert versus_plain["verdict"] == UNCLEAR and "plain is under-trained" in versus_plain["why"]


def test_every_experiment_reports_claims_and_health(runs):
    for name, (results, folder) in runs.items():
        text = (folder / "summary.md").read_text()
        assert results["claims"] and all(c["verdict"] in (HOLDS, FAILS, UNCLEAR) for c in results["claims"])
        for claim in results["claims"]:
            assert claim["claim"] in text and claim["verdict"] in text and claim["noise"] in text
        assert "Run health:" in text and "| health |" in text
        assert "wall time" in text


def test_help_after_a_name_describes_that_experiment(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "responses", "--help"])
    text = capsys.readouterr().out
    assert text.startswith("minires experiment responses\n\nFigure 7 of the paper")
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("  warmup")}
    assert rows == {"warmup": ["100", "100", "400"]}       # responses.QUICK / STANDARD / FULL
    assert "  setting" in text and [line.split()[1:] for line in text.splitlines()
                                     if line.startswith("  setting")] == [["--quick", "--standard", "--full"]]
    assert "usage: minires experiment" in text and "Figure 6" not in text
    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    assert capsys.readouterr().out.startswith("usage: minires experiment")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_mode_with_resnet110_has_the_papers_warmup(name):
    """The paper trains ResNet-110 at 0.01 for its first ~400 iterations; without it the quick
    ResNet-110 ended at 61% test error."""
    from minires.experiments import get
    module = get(name)
    for mode in common.modes_of(module).values():
        if 110 in tuple(mode.get("depths", ())) + (mode.get("depth"),):
            assert mode["warmup"] > 0


def _summed_rate(settings) -> float:
    """The sum over a run's iterations of the learning rate the paper's schedule sets."""
    from minires.optim import SGD, paper_schedule
    optimizer = SGD([mr.Tensor(np.zeros(1), requires_grad=True)], lr=settings["lr"], momentum=0.9)
    schedule, total = paper_schedule(optimizer, settings["iterations"], warmup=settings["warmup"]), 0.0
    for _ in range(settings["iterations"]):
        total += optimizer.param_groups[0]["lr"]
        schedule.step()
    return total


def _decay_factor(settings) -> float:
    """How much weight decay alone shrinks a weight over a run: exp(-wd * sum of rates / (1 - momentum))."""
    return np.exp(-settings["weight_decay"] * _summed_rate(settings) / (1 - 0.9))


def test_responses_docstring_weight_decay_factors_follow_the_schedules():
    """The docstring's x0.034 (paper, 64k) and x0.93 (quick, 1,600) are exp(-wd * sum of rates / (1 - momentum))."""
    from minires.experiments import responses
    factor = _decay_factor
    paper = dict(responses.FULL, warmup=0)   # the paper's CIFAR schedule has no warm-up but ResNet-110's
    assert f"x{factor(paper):.3f}" == "x0.034" and "x0.034 over the\npaper's 64k iterations" in responses.__doc__
    assert f"x{factor(responses.QUICK):.2f}" == "x0.93" and "x0.93 over 1,600 quick ones" in responses.__doc__
    readme = one_line("README.md")
    assert "by weight decay alone by about x0.034, these 1,600 by x0.93" in readme


def test_decay_plan_matches_the_papers_weight_decay_shrinkage():
    """results/responses/decay-seeds-plan.md: its weight decay keeps wd * sum of rates equal to the
    FULL setting's, and its numbers are those of the two schedules."""
    from minires.experiments import responses
    paper, standard = _summed_rate(responses.FULL), _summed_rate(responses.STANDARD)
    matched = responses.FULL["weight_decay"] * paper / standard
    plan = one_line("results/responses/decay-seeds-plan.md")
    assert f"Σ η_t = {paper:,.0f}" in plan and f"(Σ η_t = {standard:.1f})" in plan
    def short(x, digits):                       # 4.43e-03 written as 4.43e-3
        return f"{x:.{digits}e}".replace("e-0", "e-")
    assert f"λ = 1e-4 × {paper:,.0f} / {standard:.1f} = {short(matched, 2)}" in plan
    assert f"**{short(matched, 1)}**" in plan and f"--weight-decay {short(matched, 1)}" in plan
    assert responses.STANDARD["weight_decay"] == responses.MATCHED_WEIGHT_DECAY == float(short(matched, 1))
    assert f"10^{{-4}} \\times {paper:.0f} / {standard:.1f} \\approx 4.4" in responses.__doc__
    assert (f"x{_decay_factor(responses.STANDARD):.3f} against the paper's "
            f"x{_decay_factor(responses.FULL):.3f}") in plan
    runs = one_line("results/responses/decay-seeds/README.md")
    assert (f"about x{_decay_factor(responses.STANDARD):.3f} against the paper's x{_decay_factor(responses.FULL):.3f}, "
            f"instead of x{_decay_factor(responses.QUICK):.2f} at 1e-4") in runs


def _responses_history() -> str:
    """results/responses/README.md, the account of every responses run (whitespace collapsed)."""
    return one_line("results/responses/README.md")


def test_responses_docstring_quotes_the_runs_at_both_weight_decays():
    """The docstring's summary: the ladder over the decay seeds, the plain-twin claim and the ladder at
    1e-4 (eight standard seeds, three long ones), and the decay runs' wall times."""
    from minires.experiments import responses, seeds
    folder = Path(__file__).parents[1] / "results/responses"
    doc = " ".join(responses.__doc__.split())

    def combined(runs):
        return seeds.combine(seeds.load_runs(sorted(folder.glob(runs))))["claims"]
    plain, ladder = combined("decay-seeds/seed[0-9]")
    deep, deeper = ladder["pairs"]
    assert ladder["verdict"] == HOLDS and all(g > 0 for g in deeper["gaps"])
    assert f"ResNet-110 < ResNet-56 on every seed, 95% interval of the mean gap [{deeper['low']:+.3f}, {deeper['high']:+.3f}]" in doc
    assert f"ResNet-56 < ResNet-20, [{deep['low']:+.3f}, {deep['high']:+.3f}]" in doc
    assert plain["verdict"] == UNCLEAR and len(plain["seeds_left_out"]) == 3 and "on 3 of the 4 seeds" in doc
    plain, ladder = combined("standard-seed[0-9]")
    assert plain["verdict"] == HOLDS and len(plain["seeds_used"]) == 6 and "holds (the six whose plain-56 trained)" in doc
    pair = ladder["pairs"][1]
    assert ladder["verdict"] == UNCLEAR and f"ResNet-56 in [{pair['low']:+.3f}, {pair['high']:+.3f}]" in doc
    pair = combined("long-seed[0-9]")[1]["pairs"][1]
    assert f"4,800 iterations: [{pair['low']:+.3f}, {pair['high']:+.3f}]" in doc
    plain, ladder = combined("decay-mnist-seeds/seed[0-9]")
    pair = ladder["pairs"][1]
    assert ladder["verdict"] == HOLDS and all(g > 0 for g in pair["gaps"]) and len(pair["gaps"]) == 8
    assert f"on every seed (ResNet-110 < ResNet-56 in [{pair['low']:+.3f}, {pair['high']:+.3f}])" in doc
    assert plain["verdict"] == UNCLEAR and [p["verdict"] for p in plain["pairs"]] == [UNCLEAR, HOLDS]
    assert "cannot tell (depth 56 holds, depth 20 does not show)" in doc
    assert len(plain["seeds_used"]) == 7 and "(plain-56 on 7 of 8 seeds)" in doc
    plain, ladder = combined("balanced-seeds/seed[0-9]")
    pair = plain["pairs"][0]
    assert ladder["verdict"] == HOLDS and plain["verdict"] == UNCLEAR and len(plain["seeds_used"]) == 5
    assert (f"the ladder holds and the plain-twin claim cannot tell (ResNet-20 < plain-20 in [{pair['low']:+.3f}, "
            f"{pair['high']:+.3f}] over the five seeds whose plain-56 trained)") in doc
    walls = [json.loads(p.read_text())["wall_seconds"] for p in folder.glob("decay-seeds/seed[0-9]/results.json")]
    assert f"{min(walls):.0f}-{max(walls):.0f} s per seed" in doc


def test_responses_history_quotes_the_committed_standard_run():
    """The numbers the responses history reads off results/responses/standard-seed0 are that run's."""
    from minires.experiments import responses
    results = json.loads((Path(__file__).parents[1] / "results/responses/standard-seed0/results.json").read_text())
    nets, doc = results["nets"], _responses_history()
    mean = {name: np.mean(r["std"]) for name, r in nets.items()}
    assert all(f"{name.replace('resnet', 'ResNet-').replace('plain', 'plain-')} {mean[name]:.3f}" in doc
               for name in nets)
    assert [c["verdict"] for c in results["claims"]] == [UNCLEAR, UNCLEAR] and "both verdicts are \"cannot tell" in doc
    assert f"ResNet-20 vs plain-20, {mean['plain20'] - mean['resnet20']:.3f}" in doc
    assert f"ResNet-110 vs ResNet-56, {mean['resnet56'] - mean['resnet110']:.3f}" in doc
    errors = [100 * r["final_train_error"] for r in nets.values()]
    assert f"training error {min(errors):.0f}-{max(errors):.0f}%" in doc and all(r["health"]["status"] == "ok" for r in nets.values())
    later = [s for name in ("plain56", "resnet56", "resnet110") for layer, s in zip(nets[name]["layers"], nets[name]["std"])
             if layer.startswith(("layer2", "layer3"))]
    assert f"lie at {min(later):.2f}-{max(later):.2f}" in doc
    second = [responses._mean_of(nets[name], ".bn2") for name in ("resnet20", "resnet56", "resnet110")]
    assert "{:.3f}, {:.3f} and {:.3f}".format(*second) in doc


def test_responses_history_quotes_the_standard_seeds_combined():
    """ResNet-110 vs ResNet-56 over the committed weight-decay-1e-4 standard seeds (the first three, all
    eight) and over the MNIST ones, as the responses history states them."""
    from minires.experiments import seeds
    folder = Path(__file__).parents[1] / "results/responses"
    doc = _responses_history()
    combined = {runs: seeds.combine(seeds.load_runs(sorted(folder.glob(runs))))
                for runs in ("standard-seed[0-2]", "standard-seed[0-9]", "standard-mnist-seed[0-9]")}
    first, eight, mnist = ([c["claims"][1], c["claims"][1]["pairs"][-1]] for c in combined.values())
    assert all(pair["expected"] == "ResNet-110 < ResNet-56" for _, pair in (first, eight, mnist))
    ladder, pair = first
    assert all(g > 0 for g in pair["gaps"]) and "gaps {:+.3f}, {:+.3f} and {:+.3f}".format(*pair["gaps"]) in doc
    assert f"[{pair['low']:+.3f}, {pair['high']:+.3f}], contains 0, so the ladder still cannot tell" in doc
    assert pair["low"] < 0 < pair["high"] and ladder["verdict"] == UNCLEAR
    ladder, pair = eight
    assert len(pair["gaps"]) == 8 and f"less on {sum(g > 0 for g in pair['gaps'])} of 8 seeds" in doc
    assert f"mean gap {pair['mean']:+.3f}, but the 95% interval [{pair['low']:+.3f}, {pair['high']:+.3f}] still" in doc
    assert pair["low"] < 0 < pair["high"] and ladder["verdict"] == UNCLEAR
    assert combined["standard-seed[0-9]"]["claims"][0]["verdict"] == HOLDS and \
        "the plain-twin claim holds over the six seeds" in doc
    assert len(combined["standard-seed[0-9]"]["claims"][0]["seeds_used"]) == 6
    ladder, pair = mnist
    assert ladder["verdict"] == HOLDS and f"95% interval [{pair['low']:+.3f}, {pair['high']:+.3f}]" in doc


def test_responses_history_quotes_the_planned_long_seeds():
    """The 4,800-iteration seeds' ResNet-110 vs ResNet-56 gaps and interval, as the responses history states them."""
    from minires.experiments import seeds
    runs = sorted((Path(__file__).parents[1] / "results/responses").glob("long-seed[0-9]"))
    ladder = seeds.combine(seeds.load_runs(runs))["claims"][1]
    pair = ladder["pairs"][-1]
    doc = _responses_history()
    assert pair["expected"] == "ResNet-110 < ResNet-56" and ladder["verdict"] == UNCLEAR
    assert "gaps, {:+.3f}, {:+.3f} and {:+.3f}, leave the".format(*pair["gaps"]) in doc
    assert f"95% interval [{pair['low']:+.3f}, {pair['high']:+.3f}] around 0: cannot tell" in doc
    minutes = [json.loads((run / "results.json").read_text())["wall_seconds"] / 60 for run in runs]
    assert f"{min(minutes):.0f}-{max(minutes):.0f} minutes per seed" in doc


@pytest.mark.parametrize("depth,residual", [(20, False), (56, False), (20, True), (56, True), (110, True)])
def test_scale_free_layers_are_those_a_bn_divides_out_again(depth, residual):
    """From the architecture: in a plain net every response feeds ReLU, a bias-free conv and a BN but the
    last, which feeds the head; in a ResNet each block's first does, while its second is added to the
    shortcut and the stem's feeds the shortcut too. The docstring's sizes at initialisation: scaling a
    scale-free layer by 10 moves the logits by under 5e-3 of their largest magnitude (eps), a held-up
    layer by over 30%."""
    from minires.experiments import responses
    mr.manual_seed(0)
    model = cifar_resnet(depth, residual=residual, width=4).double()
    names = [name for name, _ in responses.response_layers(model)]
    expected = [n for n in names if n.endswith(".bn1")] if residual else names[:-1]
    images = np.random.default_rng(0).standard_normal((4, 3, 16, 16))
    free = responses.scale_free_layers(model, images)
    assert free == expected
    change = responses.logit_change_when_scaled(model, images)
    assert max(change[n] for n in free) < 5e-3
    assert min(change[n] for n in names if n not in free) > 0.3


def test_scale_free_layers_get_no_gradient_along_their_scale():
    """The docstring's consequence: the loss gradient of a scale-free layer's (gamma, beta) is orthogonal to
    (gamma, beta), so only weight decay changes their size to first order; a held-up layer's is not."""
    from minires.experiments import responses
    rng = np.random.default_rng(1)
    mr.manual_seed(0)
    model = cifar_resnet(8, residual=True, width=4).double()
    for _, bn in responses.response_layers(model):
        bn.weight.data[...] = rng.uniform(0.3, 1.5, bn.weight.shape)
        bn.bias.data[...] = rng.normal(0.0, 0.3, bn.bias.shape)
    images = rng.standard_normal((8, 3, 16, 16))
    F.cross_entropy(model(mr.tensor(images)), mr.tensor(rng.integers(0, 10, 8))).backward()
    free = responses.scale_free_layers(model, images)

    def radial(bn):   # cosine between the gradient and (gamma, beta)
        theta = np.concatenate([bn.weight.numpy(), bn.bias.numpy()])
        grad = np.concatenate([bn.weight.grad.numpy(), bn.bias.grad.numpy()])
        return abs(theta @ grad) / (np.linalg.norm(theta) * np.linalg.norm(grad))

    layers = dict(responses.response_layers(model))
    assert free and all(radial(layers[n]) < 1e-4 for n in free)
    assert all(radial(layers[n]) > 1e-2 for n in layers if n not in free)


def test_balanced_decay_plan_interpolates_the_committed_gaps():
    """results/responses/balanced-decay-plan.md: its weight decay is where the ladder's gap and the
    depth-20 plain-twin gap, each linear in log decay between the committed combinations at 1e-4 and
    4.4e-3, meet; its shrink factors and half-widths are the schedule's and Student's t."""
    from minires.experiments import responses, seeds
    root = Path(__file__).parents[1] / "results/responses"
    plan = one_line(root / "balanced-decay-plan.md")

    def pair(folder, expected):
        claims = json.loads((root / folder / "seeds.json").read_text())["claims"]
        return next(p for c in claims for p in c["pairs"] if p["expected"] == expected)
    ladder = [pair(f, "ResNet-110 < ResNet-56") for f in ("standard-seeds-8", "decay-seeds")]
    twin = [pair(f, "ResNet-20 < plain-20") for f in ("standard-seeds-8", "decay-seeds")]
    a0, a1, b0, b1 = ladder[0]["mean"], ladder[1]["mean"], twin[0]["mean"], twin[1]["mean"]
    assert f"+{a0:.3f} over eight seeds, standard deviation {np.std(ladder[0]['gaps'], ddof=1):.3f}" in plan
    assert f"+{b0:.3f} over the six seeds it was read from, gaps' standard deviation {twin[0]['std']:.3f}" in plan
    assert f"(ResNet-110 < ResNet-56: +{a1:.3f})" in plan and f"(ResNet-20 < plain-20: {b1:.3f}, the one seed" in plan
    assert f"+{a0:.3f} + {a1 - a0:.3f} t" in plan and f"+{b0:.3f} - {b0 - b1:.3f} t" in plan
    t = (b0 - a0) / ((a1 - a0) + (b0 - b1))
    lam = 1e-4 * 44 ** t
    assert f"both +{a0 + (a1 - a0) * t:.3f}, at t = {t:.3f}: λ = 1e-4 × 44^{t:.3f} = {lam * 1e4:.2f}e-4" in plan
    assert f"**{lam * 1e4:.1f}e-4**" in plan
    settings = dict(responses.STANDARD, weight_decay=round(lam, 5))
    factors = [_decay_factor(dict(settings, weight_decay=w)) for w in (round(lam, 5), 1e-4, 4.4e-3)]
    assert "by x{:.2f}, against x{:.2f} at 1e-4 and x{:.3f} at 4.4e-3".format(*factors) in plan
    eight, six = seeds.t95(7) / np.sqrt(8), seeds.t95(5) / np.sqrt(6)
    quoted_t = {7: 2.36, 5: 2.57}                  # the plan's two decimals of Student's t
    assert all(abs(seeds.t95(dof) - t) <= 0.0051 for dof, t in quoted_t.items())   # 2.365 (3 decimals) is 2.3646
    assert (f"over eight seeds is {eight:.2f} standard deviations of the gaps (Student's t, 7 degrees of freedom: "
            f"{quoted_t[7]} / sqrt(8)); over six, if two plain-56 do not train as at 1e-4, {six:.2f} "
            f"({quoted_t[5]} / sqrt(6))") in plan
    spreads = np.std(ladder[0]["gaps"], ddof=1), twin[0]["std"]
    assert f"({spreads[0]:.3f} and {spreads[1]:.3f}) that is about ±{eight * spreads[0]:.3f}" in plan


def test_gradnorms_docstring_reads_the_committed_quick_run():
    """Every number the gradnorms docstring gives for "what the quick run shows" is results/gradnorms/
    quick-seed0's, and it says the run's verdict, not a stronger one."""
    from minires.experiments import gradnorms
    run = json.loads((Path(__file__).parents[1] / "results/gradnorms/quick-seed0/results.json").read_text())
    doc = " ".join(gradnorms.__doc__.split())
    nets = run["nets"]

    def first_over_last(net):           # the backward gradient at the first conv over the last's, per step
        return [a[0] / a[-1] for a in nets[net]["act_grad_norm"]]

    def decades(net):                   # spread of the weight gradients, per step after step 0
        return [np.log10(max(w) / min(w)) for w in nets[net]["weight_grad_norm"][1:]]
    assert nets["plain56"]["steps"] == [0, 30, 59]
    assert f"plain-56's first conv gets about {first_over_last('plain56')[0]:.0e} times the last".replace("e+0", "e") in doc
    plain20 = first_over_last("plain20")
    assert f"plain-20's first conv gets {min(plain20):.0f}-{max(plain20):.0f} times its last one's at every recorded step" in doc
    verdict = run["claims"][0]
    tolerance = re.search(r"tolerance of ([\d.]+) decades", verdict["noise"]).group(1)
    assert (f"at step 59 its first conv gets 10^{np.log10(first_over_last('plain56')[-1]):.2f} of the last conv's "
            f"gradient, within the {tolerance}-decade tolerance of the one-decade bound, so the run's verdict on \"no "
            f"vanishing\" is *{verdict['verdict'].replace(' at this setting', '')}*") in doc
    for net, label in (("plain56", "plain-56 stay within"), ("resnet56", "those of ResNet-56 within")):
        spread = decades(net)
        assert f"{label} {min(spread):.1f}-{max(spread):.1f}" in doc
    no_bn = first_over_last("plain56-noBN")
    assert all(0.05 < r < 0.2 for r in no_bn) and "(the first conv gets about a tenth of the last)" in doc
    dead = nets["resnet56-noBN"]
    exploded = dead["act_grad_norm"][0][0] / dead["act_grad_norm"][0][-1]
    assert f"ResNet-56 explodes at init (x{exploded:.0e})".replace("e+0", "e") in doc
    assert all(max(w) == 0 for w in dead["weight_grad_norm"][1:]) and dead["health"]["status"] == "dead"
    assert "has only zero weight gradients by step 30 (flagged dead)" in doc


def test_degradation_docstring_reads_the_committed_quick_runs():
    """The docstring's table, gaps and wall times are results/degradation/quick-seed{0,1,2}'s."""
    from minires.experiments import degradation
    folder = Path(__file__).parents[1] / "results/degradation"
    runs = [json.loads((folder / f"quick-seed{k}/results.json").read_text()) for k in range(3)]
    doc = degradation.__doc__
    order = ("plain20", "plain56", "resnet20", "resnet56")
    for r in runs:
        cells = [f"{100 * r['runs'][n]['final_train_error']:.1f}% / {100 * r['runs'][n]['final_test_error']:.1f}%" for n in order]
        assert f"{r['seed']:<12}  " + "  ".join(f"{c:<18}" for c in cells).rstrip() in doc
    train = [{n: 100 * r["runs"][n]["final_train_error"] for n in order} for r in runs]
    plain = [t["plain56"] - t["plain20"] for t in train]
    resnet = [t["resnet56"] - t["resnet20"] for t in train]
    text = " ".join(doc.split())
    assert f"Plain-56 ends {min(plain):.1f}-{max(plain):.1f} points above plain-20" in text
    assert f"ResNet-56 ends between {-min(resnet):.1f} points below and {max(resnet):.1f} points above ResNet-20" in text
    assert [k for k, gap in enumerate(resnet) if gap < 0] == [1, 2] and "below it with seeds 1 and 2" in text
    walls = [r["wall_seconds"] for r in runs]
    assert f"{min(walls):.0f}-{max(walls):.0f} s on an idle 2-core CPU" in text


def test_responses_docstring_quotes_the_quick_wall_times():
    """"504 and 569 s (seeds 2 and 1) on an idle 2-core CPU": the quick runs that had the machine to
    themselves (seed 0's shared one is left out)."""
    from minires.experiments import responses
    folder = Path(__file__).parents[1] / "results/responses"
    quick = [json.loads((folder / f"quick-seed{k}/results.json").read_text()) for k in range(3)]
    idle = [r for r in quick if r["load_average"] <= r["cores"]]
    assert [r["seed"] for r in idle] == [1, 2]
    doc = " ".join(responses.__doc__.split())
    assert f"{idle[1]['wall_seconds']:.0f} and {idle[0]['wall_seconds']:.0f} s (seeds 2 and 1) on an idle 2-core CPU" in doc


@pytest.mark.parametrize("name", ["degradation", "gradnorms", "responses", "lesion", "shortcuts"])
def test_each_experiments_help_states_its_quick_and_full_settings(name):
    """What ``minires experiment NAME --help`` says of the quick and full settings (the module's
    docstring) is what the QUICK and FULL dicts hold: widths, depths, iterations, batch, test images."""
    module = importlib.import_module(f"minires.experiments.{name}")
    doc = " ".join(module.__doc__.split())
    quick, full = module.QUICK, module.FULL
    assert f"widths {quick['width']}/{2 * quick['width']}/{4 * quick['width']}" in doc
    assert f"{quick['iterations']:,} iterations" in doc
    assert f"{full['iterations'] // 1000}k iterations" in doc or f"{full['iterations']:,} iterations" in doc
    depths = quick.get("depths", (quick.get("depth"),))
    assert (f"{depths[0]} and {depths[1]}" if len(depths) == 2 else f"depth {depths[0]}") in doc
    if name != "gradnorms":                   # gradnorms records one batch of 128 per step instead
        assert f"batch {quick['batch_size']}" in doc
    if name in ("lesion", "degradation"):
        assert f"{quick['n_test']:,} test" in doc or f"{quick['n_test']:,} held-out" in doc


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_setting_the_help_lists_can_be_overridden(name, capsys):
    """``--help`` lists the settings and says "each can be overridden below": each has an option that sets it."""
    import argparse
    from minires.experiments import OVERRIDES, add_arguments
    with pytest.raises(SystemExit):
        main(["experiment", name, "--help"])
    assert "each can be overridden below" in capsys.readouterr().out
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    for key, value in importlib.import_module(f"minires.experiments.{name}").QUICK.items():
        value = 7 if value is None else value
        given = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        args = parser.parse_args([name, f"--{key.replace('_', '-')}", given])
        assert key in OVERRIDES and getattr(args, key) == value


def test_the_workers_help_says_shortcuts_trains_one_net_at_a_time(monkeypatch):
    """shortcuts times its nets, so it trains them one at a time whatever --workers says; the help says so."""
    import argparse
    from minires.experiments import add_arguments, shortcuts
    class Asked(Exception):
        pass

    def map_nets(*args, workers, **kwargs):
        raise Asked(workers)
    monkeypatch.setattr(shortcuts, "map_nets", map_nets)
    with pytest.raises(Asked) as asked:
        shortcuts.run(None, shortcuts.QUICK, workers=3)
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    text = " ".join(next(a.help for a in parser._actions if a.dest == "workers").split())
    assert asked.value.args == (1,) and "shortcuts: one at a time" in text


def test_the_standard_help_states_the_time_the_committed_standard_runs_took():
    """``--standard``'s help gives the time of its runs: that of every committed run at the STANDARD settings
    that had its machine to itself (not "about an hour": they took about ten minutes)."""
    import argparse
    from minires.experiments import add_arguments, responses
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    text = " ".join(next(a.help for a in parser._actions if a.option_strings == ["--standard"]).split())
    low, high = map(int, re.search(r"responses: (\d+)-(\d+) minutes on an idle 2-core CPU", text).groups())
    runs = [json.loads(p.read_text()) for p in (Path(__file__).parents[1] / "results/responses").glob("**/results.json")]
    idle = [r["wall_seconds"] for r in runs if r["mode"] == "standard" and r["load_average"] <= r["cores"] == 2
            and not common.differences(r["settings"], responses.STANDARD)]
    assert len(idle) >= 8 and low == round(min(idle) / 60) and high == round(max(idle) / 60)


def test_the_standard_options_help_gives_the_committed_standard_runs_minutes():
    """``--standard``'s help, "responses: 8-11 minutes on an idle 2-core CPU": the span, in whole minutes, of
    the wall times of every committed responses run at exactly the standard settings on an idle machine."""
    import argparse
    from minires.experiments import add_arguments, responses
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    help_text = " ".join(next(a.help for a in parser._actions if "--standard" in a.option_strings).split())
    standard = {key: list(value) if isinstance(value, tuple) else value for key, value in responses.STANDARD.items()}
    runs = [json.loads(p.read_text()) for p in (Path(__file__).parents[1] / "results/responses").glob("**/results.json")]
    walls = [r["wall_seconds"] for r in runs if r["settings"] == standard and r["load_average"] <= r["cores"] == 2]
    assert len(walls) >= 8
    assert f"responses: {round(min(walls) / 60)}-{round(max(walls) / 60)} minutes on an idle 2-core CPU" in help_text


@pytest.mark.parametrize("name", ["lesion", "shortcuts"])
def test_the_quoted_test_error_noise_is_the_codes_on_the_quick_test_images(name):
    """"two binomial standard deviations ... 3.2 on the quick run's 1,000 images": common.test_error_noise's."""
    module = importlib.import_module(f"minires.experiments.{name}")
    doc = " ".join(module.__doc__.split())
    n_test = module.QUICK["n_test"]
    points = common.test_error_noise(n_test)[0]
    assert (f"{points:.1f} on the quick run's {n_test:,} images" in doc
            or f"on {n_test:,} images: {points:.1f} points" in doc)


def test_degradation_docstring_quotes_the_run_without_warm_up_as_its_page_records_it():
    """The docstring's seed 2 without the warm-up ("sat at chance for 400 iterations and ended at 39% training
    error against ResNet-20's 10%") is what results/degradation/README.md records of that run, rounded."""
    from minires.experiments import degradation
    page = one_line("results/degradation/README.md")
    deep, shallow, iterations = re.search(r"seed 2 gave ResNet-56 ([\d.]+)% training error against ResNet-20's "
                                          r"([\d.]+)%: it sat near chance for (\d+) iterations first", page).groups()
    assert (f"ResNet-56 sat at chance for {iterations} iterations and ended at {float(deep):.0f}% training error "
            f"against ResNet-20's {float(shallow):.0f}%") in " ".join(degradation.__doc__.split())
