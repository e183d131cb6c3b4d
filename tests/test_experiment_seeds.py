"""Claims judged over seeds: the 95% interval of each pair's mean gap decides, and unreadable seeds are left out."""
import json
import math
from pathlib import Path

import pytest

from minires.cli import main
from minires.experiments import seeds
from minires.experiments.common import FAILS, HOLDS, UNCLEAR, compare, judge

OK = {"status": "ok"}


def planted_results(seed, gap, status="ok", settings=None, data="planted"):
    """A degradation-like results.json whose one claim compares ResNet-56 < ResNet-20 with ``gap``."""
    comparison = compare(("ResNet-56", 10.0), ("ResNet-20", 10.0 + gap), 5.0)
    health = {"resnet20": OK, "resnet56": {"status": status}}
    claim = judge("deeper ResNets have lower training error", [comparison], "one seed", health, list(health))
    return {"experiment": "degradation", "mode": "quick", "data": data, "seed": seed,
            "settings": settings or {"width": 4}, "claims": [claim]}


def test_the_interval_is_students_t_over_the_seeds():
    pair = seeds.judge_gaps("a < b", [1.0, 2.0, 3.0])
    half = 4.303 / math.sqrt(3)          # t(0.975, 2 dof) * sample std 1 / sqrt(3)
    assert pair["mean"] == pytest.approx(2.0) and pair["std"] == pytest.approx(1.0)
    assert (pair["low"], pair["high"]) == pytest.approx((2 - half, 2 + half))
    assert pair["verdict"] == UNCLEAR    # the interval contains 0


@pytest.mark.parametrize("gaps, verdict", [((4.0, 5.0, 6.0), HOLDS), ((-4.0, -5.0, -6.0), FAILS),
                                           ((-4.3, 4.0, 10.3), UNCLEAR)])
def test_verdict_over_seeds_follows_the_gaps(gaps, verdict):
    runs = [planted_results(seed, gap) for seed, gap in enumerate(gaps)]
    claim = seeds.combine(runs)["claims"][0]
    assert claim["verdict"] == verdict and claim["pairs"][0]["gaps"] == pytest.approx(list(gaps))


def test_a_pair_read_from_one_seed_says_it_has_no_spread_and_writes_valid_json(tmp_path):
    """One usable seed has no standard deviation: the report says so instead of printing nan, and
    seeds.json holds null (strict JSON, which NaN is not)."""
    combined = seeds.combine([planted_results(0, 5.0), planted_results(1, 6.0, status="dead")])
    pair = combined["claims"][0]["pairs"][0]
    assert (pair["std"], pair["low"], pair["high"], pair["verdict"]) == (None, None, None, UNCLEAR)
    report = seeds.report(combined)
    assert "n/a: one seed" in report and "nan" not in report.lower()
    text = json.dumps(combined)
    assert "NaN" not in text and json.loads(text)["claims"][0]["pairs"][0]["low"] is None


def test_a_seed_with_a_dead_net_is_left_out_and_named():
    runs = [planted_results(0, 5.0), planted_results(1, 6.0, status="dead"), planted_results(2, 5.5),
            planted_results(3, 4.5)]
    claim = seeds.combine(runs)["claims"][0]
    assert claim["seeds_used"] == [0, 2, 3] and claim["seeds_left_out"] == [1] and claim["verdict"] == HOLDS
    only_one = seeds.combine([planted_results(0, 5.0), planted_results(1, 6.0, status="dead")])["claims"][0]
    assert only_one["verdict"] == UNCLEAR   # one usable seed has no spread


def test_the_report_gives_each_left_out_seeds_own_reason():
    """Not "dead or diverged" for an under-trained net: the reason its run gave."""
    runs = [planted_results(0, 5.0), planted_results(1, 6.0, status="under-trained"), planted_results(2, 5.5),
            planted_results(3, 4.5, status="dead")]
    combined = seeds.combine(runs)
    assert combined["claims"][0]["seeds_left_out"] == [1, 3]
    text = seeds.report(combined)
    assert "; left out: seed 1, resnet56 is under-trained, so the claim cannot be read from this run" in text
    assert "; left out: seed 3, resnet56 is dead, so the claim cannot be read from this run)" in text


def write_runs(tmp_path, runs):
    folders = []
    for run in runs:
        folder = tmp_path / f"seed{run['seed']}"
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(run))
        folders.append(str(folder))
    return folders


def test_combine_from_the_command_line_writes_seeds_md(tmp_path):
    folders = write_runs(tmp_path, [planted_results(s, g) for s, g in ((0, 4.0), (1, 5.0), (2, 6.0))])
    assert main(["experiment", "degradation", "--combine", *folders, "--out", str(tmp_path / "all")]) == 0
    text = (tmp_path / "all" / "seeds.md").read_text()
    assert "**holds** (seeds used: 0, 1, 2)" in text and "| ResNet-56 < ResNet-20 |" in text
    assert json.loads((tmp_path / "all" / "seeds.json").read_text())["claims"][0]["verdict"] == HOLDS


def test_runs_that_cannot_be_combined_are_refused(tmp_path):
    one = write_runs(tmp_path, [planted_results(0, 1.0)])
    with pytest.raises(ValueError, match="repeat a seed"):
        seeds.load_runs(one * 2)
    (tmp_path / "mixed").mkdir()
    mixed = [planted_results(0, 1.0), planted_results(1, 1.0, settings={"width": 8})]
    mixed = write_runs(tmp_path / "mixed", mixed)
    with pytest.raises(ValueError) as refused:
        seeds.load_runs(mixed)
    assert str(refused.value) == (f"the runs differ in settings.width (4 in {mixed[0]}; 8 in {mixed[1]}): runs "
                                  "combined over seeds must agree in experiment, mode, data and settings")
    with pytest.raises(SystemExit):
        main(["experiment", "degradation", "--seeds", "1,1"])


def test_seeds_resume_finished_runs_and_refuse_a_folder_holding_another(tmp_path, capsys):
    """An interrupted --seeds run, started again, reuses the seeds it finished and runs the rest; a seed
    folder holding a run of other settings is refused, not overwritten."""
    import minires as mr
    tiny = ["degradation", "--quick", "--width", "2", "--iterations", "2", "--batch-size", "16", "--n-train", "32",
            "--n-test", "16", "--depths", "8,14", "--eval-every", "1", "--no-progress", "--workers", "1",
            "--out", str(tmp_path)]
    with mr.backend.using("conv2d", "numpy"):
        assert main(["experiment", *tiny, "--seed", "0", "--out", str(tmp_path / "seed0")]) == 0   # finished earlier
        finished = (tmp_path / "seed0" / "results.json").read_bytes()
        capsys.readouterr()
        assert main(["experiment", *tiny, "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    assert f"seed 0: reusing the finished run in {tmp_path / 'seed0'}" in out and "seed 1: reusing" not in out
    assert (tmp_path / "seed0" / "results.json").read_bytes() == finished
    assert json.loads((tmp_path / "seed1" / "results.json").read_text())["seed"] == 1
    assert json.loads((tmp_path / "seeds.json").read_text())["seeds"] == [0, 1]
    assert main(["experiment", *tiny, "--iterations", "3", "--seeds", "0,1"]) == 1     # other settings
    err = capsys.readouterr().err
    assert f"FileExistsError: {tmp_path / 'seed0'} holds another run (settings.iterations 2 instead of 3): " in err
    assert (tmp_path / "seed0" / "results.json").read_bytes() == finished


def test_runs_on_different_datasets_are_refused_naming_each(tmp_path, capsys):
    """A synthetic run and a CIFAR-10 run of the same settings are not seeds of one experiment: --combine
    refuses them, naming the data of each (not "synthetic" for both in seeds.md), and writes nothing."""
    runs = [planted_results(0, 4.0, data="synthetic: 128 training / 64 test images of (3, 16, 16)"),
            planted_results(1, 5.0, data="cifar10: 128 training / 64 test images of (3, 32, 32)"),
            planted_results(2, 6.0, data="synthetic: 128 training / 64 test images of (3, 16, 16)")]
    folders = write_runs(tmp_path, runs)
    with pytest.raises(ValueError) as refused:
        seeds.load_runs(folders)
    assert str(refused.value).startswith(f'the runs differ in data ("synthetic" in {folders[0]}, {folders[2]}; '
                                         f'"cifar10" in {folders[1]}): ')
    assert main(["experiment", "degradation", "--combine", *folders, "--out", str(tmp_path / "all")]) == 1
    assert "ValueError: the runs differ in data (" in capsys.readouterr().err
    assert not (tmp_path / "all").exists()


def test_runs_differing_in_mode_and_a_setting_name_both(tmp_path):
    quick, full = planted_results(0, 4.0), dict(planted_results(1, 5.0, settings={"width": 16}), mode="full")
    folders = write_runs(tmp_path, [quick, full])
    with pytest.raises(ValueError, match=r'^the runs differ in mode \("quick" in .*seed0; "full" in .*seed1\) and '
                                         r'settings.width \(4 in .*seed0; 16 in .*seed1\): '):
        seeds.load_runs(folders)


def test_a_broken_or_foreign_results_json_is_named(tmp_path, capsys):
    """--combine over a folder whose results.json is cut short or is not a run's names that file (not a bare
    "JSONDecodeError: Expecting value" or "KeyError: 'claims'")."""
    folders = write_runs(tmp_path, [planted_results(0, 4.0), planted_results(1, 5.0)])
    cut = Path(folders[1]) / "results.json"
    cut.write_text(cut.read_text()[:40])
    assert main(["experiment", "degradation", "--combine", *folders, "--out", str(tmp_path / "all")]) == 1
    assert f"ValueError: {cut} is not valid JSON (" in capsys.readouterr().err
    cut.write_text(json.dumps({"experiment": "degradation", "seed": 1}))
    with pytest.raises(ValueError, match=f"^{cut} lacks claims: not the results.json of a finished "):
        seeds.load_runs(folders)
    assert not (tmp_path / "all").exists()


@pytest.mark.parametrize("dof, quantile", [(1, 12.706), (10, 2.228), (11, 2.201), (20, 2.086), (30, 2.042),
                                           (60, 2.000), (120, 1.980)])
def test_the_interval_uses_students_t_at_any_number_of_seeds(dof, quantile):
    """The report says Student's t: beyond 10 degrees of freedom too (a table's two-sided 95% quantiles),
    not the normal's 1.96, which narrows the interval of 12 seeds by 11%."""
    assert seeds.t95(dof) == pytest.approx(quantile, abs=6e-4)
