"""minires.experiments: every experiment runs end to end on tiny settings and writes its JSON and PNGs.

Tiny settings (width 2, a few iterations, a few hundred images) keep the file well under two
minutes; they check the plumbing and facts that hold at any size (parameter counts of plain/ResNet
twins, the number of 3x3 layers, which blocks a plain net can lose), not the paper's effects, which
need the ``--quick`` settings (see each experiment's docstring).
"""
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires.cli import main
from minires.experiments import EXPERIMENTS, gradnorms, run_experiment
from minires.experiments.common import build_model, load_data, smooth

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
    assert set(results["effect"]) == {"plain", "resnet", "shows_degradation", "tolerance_points"}


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
    monkeypatch.setattr(threads, "MIN_PARALLEL_PASS", 0)
    F.relu(mr.tensor(np.ones((4, 2))))
    assert threads._executor is not None or threads.get_num_threads() == 1
    data = load_data("synthetic", n_train=64, n_test=32)
    settings = dict(degradation.QUICK, depths=(8, 14), width=2, iterations=2, batch_size=32, eval_every=2)
    results = degradation.run(data, settings, progress=False, workers=2)
    assert list(results["runs"]) == ["plain8", "plain14", "resnet8", "resnet14"]
    np.testing.assert_array_equal(F.relu(mr.tensor(np.array([[-1.0], [2.0]]))).numpy(), [[0.0], [2.0]])


def test_degradation_with_one_depth_reports_no_verdict():
    from minires.experiments import degradation
    runs = {f"{kind}8": {"depth": 8, "residual": kind == "resnet", "params": 10, "final_train_error": 0.3,
                         "final_test_error": 0.4, "seconds": 1.0} for kind in ("plain", "resnet")}
    assert degradation.effect(runs) is None
    results = {"data": "toy", "settings": {"width": 2, "iterations": 3}, "summary": degradation.summary(runs),
               "effect": None}
    assert "One depth only" in degradation.report(results)


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
    results, folder = run_experiment("lesion", quick=True, data="mnist", data_dir=tmp_path, out=tmp_path / "run",
                                     progress=False, depth=8, width=2, iterations=2, batch_size=16)
    assert "(1, 28, 28)" in results["data"] and (folder.path / "lesion.png").exists()


def test_bad_requests_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="no setting depth;"):
        run_experiment("degradation", out=tmp_path, depth=20)
    with pytest.raises(ValueError, match="--data-dir"):
        run_experiment("lesion", data="cifar10", out=tmp_path)
    with pytest.raises(SystemExit):
        main(["experiment", "nonsense"])


def test_smooth_is_a_trailing_moving_average():
    np.testing.assert_allclose(smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
