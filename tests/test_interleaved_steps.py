"""benchmarks/interleaved_steps.py: minires and PyTorch steps of the same net take turns and are reported
pair by pair (a tiny run: the machinery, not the speed)."""
import re

import pytest
from conftest import REPO, load_benchmark, run_keeping_threads


def test_pairs_of_steps_are_timed_and_reported(torch_oracle, capsys):
    module = load_benchmark("interleaved_steps")
    argv = ["--model", "resnet20", "--batch", "2", "--threads", "1", "--pairs", "3"]
    assert run_keeping_threads(torch_oracle, module.main, argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "resnet20 batch 2, 1 thread(s), 3 pairs, 1 uncounted + 2 counted step(s) per turn, wall clock"
    ratios = out[3].split(":")[1].split("(")[0].split(",")
    assert len(ratios) == 3 and all(float(r) > 0 for r in ratios)
    busy = out[4].split(": ")[1].split(" (")[0].split(", ")
    assert [b.split()[0] for b in busy] == ["minires", "PyTorch"]
    assert all(0 < float(b.split()[1]) < 1.5 for b in busy)        # one thread: at most about one core busy
    assert out[5].startswith("  first step of a turn, after the other framework's (not counted), median ms: minires ")
    idle = out[6].split("ms: ")[1].split(", ")
    assert [i.split()[0] for i in idle] == ["minires", "PyTorch"] and all(float(i.split()[1]) >= 0 for i in idle)


def test_a_turn_counts_only_the_steps_after_the_settling_ones():
    """The first step of a turn is reported apart and left out of the turn's mean: a step that takes 60 ms,
    then two of 5 ms, give 60 ms first and 5 ms a step (within the sleep's slack)."""
    import time
    module = load_benchmark("interleaved_steps")
    durations = iter([0.060, 0.005, 0.005])
    first, mean, cpu = module.timed_turn(lambda: time.sleep(next(durations)), settle=1, steps=2)
    assert 0.060 <= first < 0.090 and 0.005 <= mean < 0.030 and 0 <= cpu < 0.005      # sleeping costs no CPU
    durations = iter([0.030])
    first, mean, _ = module.timed_turn(lambda: time.sleep(next(durations)), settle=0, steps=1)
    assert first == mean and 0.030 <= mean < 0.060          # --settle 0 --steps 1: the script before settling


def test_a_model_pytorch_would_build_differently_and_zero_pairs_are_refused(torch_oracle, capsys):
    """``--model resnet18`` paired minires' ImageNet ResNet-18 with PyTorch's CIFAR ResNet-14 (6n+2
    from the name's number); ``--pairs 0`` ended in a StatisticsError."""
    module = load_benchmark("interleaved_steps")
    for argv, message in ((["--model", "resnet18"], "'resnet18' is not a CIFAR ResNet"),
                          (["--pairs", "0"], "is not a positive integer"), (["--threads", "0"], "is not a positive"),
                          (["--settle", "-1"], "is not a non-negative integer"), (["--steps", "0"], "is not a positive")):
        with pytest.raises(SystemExit) as exit_:
            module.main(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


REPORTS = ["results/cpu/2026-12-04-amd-epyc-interleaved-steps.txt",
           "results/cpu/2026-12-04-amd-epyc-interleaved-steps-numba-rows.txt",
           "results/cpu/2026-12-04-amd-epyc-interleaved-steps-numba-regions.txt",
           "results/cpu/2026-12-05-amd-epyc-interleaved-steps-sums-regions.txt",
           "results/cpu/2026-12-05-amd-epyc-interleaved-steps-every-size.txt",
           "results/cpu/2026-12-05-amd-epyc-interleaved-steps-settled.txt",
           "results/cpu/2026-12-05-amd-epyc-interleaved-steps-drivers.txt",
           "results/cpu/2026-12-05-amd-epyc-interleaved-steps-conv-rows.txt",
           "results/cpu/2026-12-05-amd-epyc-interleaved-steps-engine.txt",
           "results/cpu/2026-12-05-amd-epyc-interleaved-steps-images.txt"]
SETTLED, DRIVERS, CONV_ROWS, ENGINE = REPORTS[5], REPORTS[6], REPORTS[7], REPORTS[8]


def three_grids(first: str) -> list[str]:
    """A build's three runs of the grid: ``first`` and the two right after it (``-2``, ``-3``)."""
    return [first, *(first.replace(".txt", f"-{run}.txt") for run in (2, 3))]


CONV_ROWS_RUNS = three_grids(CONV_ROWS)
ENGINE_RUNS = three_grids(ENGINE)
LATEST = three_grids(REPORTS[-1])
TIME_TO_ACCURACY_LATEST = "results/train/2026-12-05-amd-epyc-time-to-accuracy-images.md"
DRIVERS_AB = "results/cpu/2026-12-05-amd-epyc-drivers-ab.txt"
IN_REGIONS_AB = "results/cpu/2026-12-05-amd-epyc-drivers-in-regions-ab.txt"     # a route dropped
FUSION_AB = "results/cpu/2026-12-05-amd-epyc-bn-relu-fusion-ab.txt"             # a route dropped


@pytest.mark.parametrize("report", REPORTS)
def test_the_readmes_tables_of_2026_12_04_quote_the_committed_outputs(report):
    """Each cell of the README's tables (median, range of the pairs' ratios, cores busy) is the committed
    run's, for every model, batch size and thread count: before numba-rows, after it, after the Numba regions,
    after the sums and ReLU's forward joined them, with every pass in a region, with settled turns, and
    after batch norm's vectors went into Numba."""
    from conftest import one_line
    runs, key = {}, None
    for line in (REPO / report).read_text().splitlines():
        if line.startswith("== "):
            model, batch, threads = re.match(r"== --model (\S+) --batch (\d+) --threads (\d+)", line).groups()
            key = (model, int(batch), int(threads))
        elif "minires / PyTorch:" in line:
            ratios = [float(r) for r in line.split(":")[1].split("(")[0].split(",")]
            runs[key] = {"median": float(line.split("median ")[1].rstrip(")")), "range": (min(ratios), max(ratios))}
        elif "cores busy" in line:
            runs[key]["busy"] = [float(b.split()[1]) for b in line.split(": ")[1].split(" (")[0].split(", ")]
    assert len(runs) == 8
    readme = one_line("README.md")
    for model in ("resnet20", "resnet56"):
        for batch in (128, 32):
            one, two = runs[(model, batch, 1)], runs[(model, batch, 2)]
            cells = [f"{r['median']:.2f} ({r['range'][0]:.2f}-{r['range'][1]:.2f})" for r in (one, two)]
            row = (f"| ResNet-{model[6:]}, batch {batch} | {cells[0]} | {cells[1]} | "
                   f"{two['busy'][0]:.2f}, {two['busy'][1]:.2f} |")
            assert row in readme, row


def test_the_readmes_account_of_the_regions_runs_is_their_outputs():
    """The numbers the README gives of the two runs after the Numba regions (the ratios at batch 32 on two
    threads, the spread of ResNet-20's steps, the first run's ratios and its two halves) are the outputs'."""
    from conftest import one_line
    readme = one_line("README.md")

    def run(report, model, batch, threads):
        block = (REPO / report).read_text().split(f"== --model {model} --batch {batch} --threads {threads}")[1]
        mine, theirs = ([int(v) for v in re.search(rf"{who} ms: ([\d, ]+)", block).group(1).split(", ")]
                        for who in ("minires", "PyTorch"))
        return mine, theirs, float(re.search(r"median ([\d.]+)", block).group(1))

    last, first = REPORTS[2], REPORTS[2].replace(".txt", "-first.txt")
    mine, theirs, median = run(last, "resnet20", 32, 2)
    assert (f"ResNet-20 at batch 32 on two threads gave {median:.2f}, its minires steps spread over "
            f"{min(mine)}-{max(mine)} ms where PyTorch's stayed at {min(theirs)}-{max(theirs)} ms") in readme
    mine, theirs, median = run(first, "resnet20", 32, 2)
    assert (f"gave {median:.2f}, minires' steps going from {min(mine[:3])}-{max(mine[:3])} ms in its first three "
            f"pairs to {min(mine[3:])}-{max(mine[3:])} ms in the last five and PyTorch's from {min(theirs[:2])}-"
            f"{max(theirs[:2])} to {min(theirs[2:])}-{max(theirs[2:])} ms") in readme
    assert f"([output]({first}))" in readme
    r56 = [run(report, "resnet56", 32, 2)[2] for report in (last, first)]
    assert f"ResNet-56 at batch 32 gave {r56[0]:.2f} and {r56[1]:.2f}" in readme
    batch128 = [run(report, model, 128, 2)[2] for report in (last, first) for model in ("resnet20", "resnet56")]
    one = [run(report, model, batch, 1)[2] for report in (last, first) for model in ("resnet20", "resnet56")
           for batch in (128, 32)]
    assert f"batch 128 {min(batch128):.2f}-{max(batch128):.2f}, one thread {min(one):.2f}-{max(one):.2f}" in readme
    ratios = [[float(row.split(" | ")[-1]) for row in re.findall(r"^\| \d \| (.+) \|$", (REPO / record).read_text(), re.M)]
              for record in ("results/train/2026-12-04-amd-epyc-time-to-accuracy-numba-regions.md",
                             "results/train/2026-12-04-amd-epyc-time-to-accuracy.md")]
    assert (f"after both changes it took {min(ratios[0]):.2f}-{max(ratios[0]):.2f}x PyTorch's time (median "
            f"{sorted(ratios[0])[1]:.2f}) against {min(ratios[1]):.2f}-{max(ratios[1]):.2f}x ({sorted(ratios[1])[1]:.2f})"
            " before them") in readme


def grid_medians(report) -> dict:
    """``{(N, batch, threads): median}`` of a grid's output (ResNet-N)."""
    return {tuple(int(v) for v in key): float(median) for *key, median in re.findall(
        r"== --model resnet(\d+) --batch (\d+) --threads (\d+)\n.*?median ([\d.]+)", (REPO / report).read_text(), re.S)}


def test_where_it_stands_is_the_latest_runs():
    """The summary at the top of "Performance (CPU)" is the ranges of the latest build's three interleaved
    grids (one thread; two threads at batch 128 and 32), of the three grids before them (batch 32 on two
    threads), of every pair of the latest three and of the latest time-to-accuracy record; its verdicts
    follow from those numbers."""
    from conftest import one_line
    readme = one_line("README.md")
    grids = [grid_medians(report) for report in LATEST]
    assert all(len(grid) == 8 for grid in grids)
    one = [m for grid in grids for (_, _, threads), m in grid.items() if threads == 1]
    two = {batch: [m for grid in grids for (_, b, threads), m in grid.items() if threads == 2 and b == batch]
           for batch in (128, 32)}
    before = [m for report in ENGINE_RUNS for m in batch32_two_threads(report)]
    pairs = [float(r) for report in LATEST for line in re.findall(r"minires / PyTorch: ([\d., ]+) \(median",
                                                                   (REPO / report).read_text()) for r in line.split(", ")]
    record = (REPO / TIME_TO_ACCURACY_LATEST).read_text()
    ratios = [float(row.split(" | ")[-1]) for row in re.findall(r"^\| \d \| (.+) \|$", record, re.M)]
    assert len(one) == 12 and len(ratios) == 3 and len(pairs) == 192
    assert (f"takes {min(one):.2f}-{max(one):.2f}x PyTorch's time on one thread, {min(two[128]):.2f}-"
            f"{max(two[128]):.2f}x on two at batch 128 and {min(two[32]):.2f}-{max(two[32]):.2f}x on two at batch 32 "
            f"(medians of 8 interleaved pairs of turns, the first step of each turn uncounted, in three runs of the grid: "
            f"below); the default training run, `minires train --model resnet20` on two threads, "
            f"{min(ratios):.2f}-{max(ratios):.2f}x PyTorch's wall time") in readme
    assert max(one) <= 1.0 and max(two[128]) <= 1.0 and max(two[32]) <= 1.0 and all(r <= 1.0 for r in ratios)  # the verdicts
    assert ("met for memory and for the steps on one thread and on two at both batch sizes (every median of the "
            "last three runs of the grid at most 1.00;") in readme
    assert (f"at batch 32 on two threads {min(two[32]):.2f}-{max(two[32]):.2f}, against {min(before):.2f}-"
            f"{max(before):.2f} in the three runs before them; single pairs move by 5-10% from one to the next, and "
            f"{sum(p > 1.0 for p in pairs)} of the 192 pairs were above 1.00, the highest {max(pairs):.2f}), and for the "
            f"default training run in 3 of 3 pairs ({ratios[0]:.2f}, {ratios[1]:.2f} and {ratios[2]:.2f})") in readme


def test_the_readmes_account_of_the_sums_run_is_its_output():
    """The medians the README compares after batch norm's sums and ReLU's forward joined the regions (two
    threads at batch 32 and 128, one thread) and ResNet-20's spread of steps at batch 32 are the outputs'."""
    from conftest import one_line

    now, before, rows_only = REPORTS[3], REPORTS[2], REPORTS[1]      # the run with the sums in the regions
    two32 = [_medians(r, 2, 32) for r in (now, before, rows_only)]          # ResNet-20, then ResNet-56
    two128 = [_medians(r, 2, 128) for r in (now, before)]
    one = [_medians(r, 1) for r in (now, before)]
    readme = one_line("README.md")
    assert (f"On two threads at batch 32 the medians are {two32[0][0]:.2f} and {two32[0][1]:.2f}, against "
            f"{two32[1][0]:.2f} and {two32[1][1]:.2f} in the run before and {two32[2][0]:.2f} and {two32[2][1]:.2f} "
            f"with `numba-rows` alone; batch 128 gave {two128[0][0]:.2f} and {two128[0][1]:.2f} ({two128[1][0]:.2f} "
            f"and {two128[1][1]:.2f} before), one thread {min(one[0]):.2f}-{max(one[0]):.2f} "
            f"({min(one[1]):.2f}-{max(one[1]):.2f})") in readme
    block = (REPO / now).read_text().split("== --model resnet20 --batch 32 --threads 2")[1]
    mine, theirs = ([int(v) for v in re.search(rf"{who} ms: ([\d, ]+)", block).group(1).split(", ")]
                    for who in ("minires", "PyTorch"))
    assert f"(ResNet-20: minires {min(mine)}-{max(mine)} ms, PyTorch {min(theirs)}-{max(theirs)} ms)" in readme
    earlier = (REPO / before).read_text().split("== --model resnet20 --batch 32 --threads 2")[1]
    mine_before = [int(v) for v in re.search(r"minires ms: ([\d, ]+)", earlier).group(1).split(", ")]
    assert "spread at batch 32 is narrower than in the run before" in readme
    assert max(mine) - min(mine) < max(mine_before) - min(mine_before)


def test_the_readmes_account_of_the_every_size_run_is_its_output():
    """The medians the README compares with the run before, after every pass went into a region."""
    from conftest import one_line

    now, before = REPORTS[4], REPORTS[3]
    readme = one_line("README.md")
    b128, b32 = ([_medians(r, 2, batch) for r in (before, now)] for batch in (128, 32))
    one = _medians(now, 1)
    assert (f"On two threads batch 128 moved from {b128[0][0]:.2f} and {b128[0][1]:.2f} to {b128[1][0]:.2f} and "
            f"{b128[1][1]:.2f}") in readme
    assert (f"batch 32 stayed at {b32[1][0]:.2f} and {b32[1][1]:.2f} ({b32[0][0]:.2f} and {b32[0][1]:.2f} before), "
            f"one thread {min(one):.2f}-{max(one):.2f}") in readme


def _medians(report, threads, batch=None):
    """The medians of a report's runs on ``threads`` threads (at ``batch`` only, if given), in report order."""
    found = re.findall(r"== --model resnet(\d+) --batch (\d+) --threads (\d+)\n.*?median ([\d.]+)",
                       (REPO / report).read_text(), re.S)
    return [float(m) for _, b, t, m in found if int(t) == threads and (batch is None or int(b) == batch)]


def _blocks(report):
    """``{(model, batch, threads): block of the report}``."""
    from conftest import REPO
    text = (REPO / report).read_text()
    return {(m, int(b), int(t)): block for m, b, t, block in
            re.findall(r"== --model (\S+) --batch (\d+) --threads (\d+)\n(.*?)(?=\n== |\n# ended)", text, re.S)}


def _steps(block, who):
    return [int(v) for v in re.search(rf"  {who} ms: ([\d, ]+)", block).group(1).split(", ")]


def test_the_readmes_account_of_the_settled_run_is_its_output():
    """The spin after each framework's step, the first steps against the counted ones, and the step times by
    batch that the README quotes are the committed outputs'; the spin is PyTorch's alone, on two threads."""
    import statistics
    from conftest import one_line
    readme = one_line("README.md")
    blocks = _blocks(SETTLED)
    assert len(blocks) == 8
    idle = {key: [float(v) for v in re.search(r"asleep.*ms: minires ([\d.]+), PyTorch ([\d.]+)", b).groups()]
            for key, b in blocks.items()}
    two = [v for (_, _, threads), v in idle.items() if threads == 2]
    theirs, ours = [v[1] for v in two], [v[0] for v in two]
    assert (f"is {min(theirs):.2f}-{max(theirs):.2f} ms after PyTorch's steps on two threads and "
            f"{min(ours):.2f}-{max(ours):.2f} ms after minires'") in readme
    assert min(theirs) > 10 * max(v for pair in idle.values() for v in pair if v not in theirs)

    def first_over_counted(block, k):
        first = int(re.search(r"median ms: minires (\d+), PyTorch (\d+)", block).group(k + 1))
        return first / statistics.median(_steps(block, ("minires", "PyTorch")[k]))
    ours, theirs = ([first_over_counted(blocks[key], k) for key in sorted(blocks) if key[2] == 2] for k in (0, 1))
    at32 = [first_over_counted(blocks[(m, 32, 2)], 0) for m in ("resnet20", "resnet56")]
    assert (f"took {min(ours):.3f}-{max(ours):.3f}x the median of minires' counted ones ({at32[0]:.3f} and "
            f"{at32[1]:.3f} at batch 32) and {min(theirs):.3f}-{max(theirs):.3f}x PyTorch's") in readme
    medians = [float(re.search(r"median ([\d.]+)", blocks[(m, 32, 2)]).group(1)) for m in ("resnet20", "resnet56")]
    assert f"the gap that stays, {medians[0]:.2f} and {medians[1]:.2f}, is milliseconds that do not grow" in readme

    by_batch = _blocks("results/cpu/2026-12-05-amd-epyc-interleaved-steps-by-batch.txt")
    cells = [f"{statistics.median(_steps(by_batch[('resnet20', b, 2)], 'minires')):g} against "
             f"{statistics.median(_steps(by_batch[('resnet20', b, 2)], 'PyTorch')):g}" for b in (1, 4, 16, 32)]
    assert (f"took {cells[0]} ms a step at batch 1, {cells[1]} at batch 4, {cells[2]} at batch 16 and "
            f"{cells[3]} at batch 32 (medians of the 8 pairs)") in readme
    gaps = [statistics.median(_steps(by_batch[("resnet20", b, 2)], "minires"))
            - statistics.median(_steps(by_batch[("resnet20", b, 2)], "PyTorch")) for b in (1, 4, 16, 32)]
    assert max(gaps) < 2 * min(gaps)            # the gap does not grow with a 32 times larger batch
    from minires import models
    parameters = len(list(models.get_model("resnet20").parameters()))
    assert f"SGD's loop over {parameters} parameters" in readme
    busy = re.search(r"cores busy.*minires ([\d.]+)", by_batch[("resnet20", 1, 2)]).group(1)
    assert f"at batch 1 minires keeps {busy} cores busy" in readme


def _round_medians(report):
    """``{(model, "before" or "after"): [each round's median]}`` of an A/B of two builds."""
    rounds = {}
    for side, model, median in re.findall(r"== (before|after) \(\w+\) round \d --model (\S+) .*?\n.*?median ([\d.]+)",
                                          (REPO / report).read_text(), re.S):
        rounds.setdefault((model, side), []).append(float(median))
    return rounds


def test_the_readmes_account_of_the_dropped_route_is_its_output():
    """The medians of the rounds the README gives for batch norm's whole direction in one call are the output's."""
    import statistics
    from conftest import one_line
    rounds = _round_medians(IN_REGIONS_AB)
    assert all(len(v) == 6 for v in rounds.values()) and len(rounds) == 4
    m = {key: statistics.median(v) for key, v in rounds.items()}
    assert (f"ResNet-20 {m[('resnet20', 'before')]:.3f} before and {m[('resnet20', 'after')]:.3f} after, ResNet-56 "
            f"{m[('resnet56', 'before')]:.3f} before and {m[('resnet56', 'after')]:.3f} after") in one_line("README.md")


def test_the_readmes_account_of_the_dropped_fusion_is_its_output():
    """The medians of the rounds the README gives for batch norm fused with the ReLU after it (unfused,
    "before", against fused, "after"), and the rounds the fused net won, are the output's."""
    import statistics
    from conftest import one_line
    rounds = _round_medians(FUSION_AB)
    before, after = rounds[("resnet20", "before")], rounds[("resnet20", "after")]
    assert sorted(rounds) == [("resnet20", "after"), ("resnet20", "before")] and len(before) == len(after) == 6
    won = sum(a < b for a, b in zip(after, before))
    assert (f"the rounds' medians of minires / PyTorch were {statistics.median(before):.2f} unfused and "
            f"{statistics.median(after):.2f} fused, the fused net ahead in {won} of 6 rounds") in one_line("README.md")


def test_the_readmes_account_of_the_drivers_runs_is_their_outputs():
    """The medians the README gives of the build before batch norm's vectors went into Numba against the build
    with them (each model's median of the rounds' medians, their ranges, and the rounds the later build won), and
    of one thread in the last build's three grids and the grid before and two threads at batch 32 in the last
    three, are the committed outputs'."""
    import statistics
    from conftest import one_line
    readme = one_line("README.md")
    rounds = _round_medians(DRIVERS_AB)
    assert sorted(rounds) == [(m, s) for m in ("resnet20", "resnet56") for s in ("after", "before")]
    for model, name in (("resnet20", "ResNet-20"), ("resnet56", "ResNet-56")):
        before, after = rounds[(model, "before")], rounds[(model, "after")]
        assert len(before) == len(after) == 6
        won = sum(a < b for a, b in zip(after, before))
        assert (f"{name} {statistics.median(before):.3f} ({min(before):.2f}-{max(before):.2f}) before and "
                f"{statistics.median(after):.3f} ({min(after):.2f}-{max(after):.2f}) after, the later build ahead in "
                f"{won} of 6 rounds") in readme, name
    one = [[float(m) for r in runs for m in re.findall(r"--threads 1\n.*?median ([\d.]+)", (REPO / r).read_text(), re.S)]
           for runs in (CONV_ROWS_RUNS, [DRIVERS])]
    two = [m for r in CONV_ROWS_RUNS for m in batch32_two_threads(r)]
    assert (f"one thread was near it ({min(one[0]):.2f}-{max(one[0]):.2f} in the three runs of 08:35-08:57 UTC, "
            f"{min(one[1]):.2f}-{max(one[1]):.2f} in the one of 04:08), two threads were not, at batch 32 least "
            f"({min(two):.2f}-{max(two):.2f} in those three runs)") in readme


def batch32_two_threads(report) -> list[float]:
    """The medians of ResNet-20 and -56 at batch 32 on two threads in a grid's output."""
    return [float(m) for m in re.findall(r"== --model resnet\d+ --batch 32 --threads 2\n.*?median ([\d.]+)",
                                         (REPO / report).read_text(), re.S)]


def test_the_conv_rows_grid_is_the_first_with_batch_32_on_two_threads_under_1_10():
    """"batch 32 on two threads gave 1.06 and 1.07, against 1.17 and 1.11 in the run before, the first grid in
    which both are under 1.10": the committed grids' medians."""
    from conftest import one_line
    latest, before = batch32_two_threads(CONV_ROWS), batch32_two_threads(DRIVERS)
    assert max(latest) < 1.10 and all(max(batch32_two_threads(r)) >= 1.10 for r in REPORTS[:REPORTS.index(CONV_ROWS)])
    assert (f"batch 32 on two threads gave {latest[0]:.2f} and {latest[1]:.2f}, against {before[0]:.2f} and "
            f"{before[1]:.2f} in the run before, the first grid in which both are under 1.10") in one_line("README.md")


@pytest.mark.parametrize("runs", [CONV_ROWS_RUNS, ENGINE_RUNS, LATEST], ids=["conv-rows", "engine", "images"])
def test_the_readme_gives_the_two_grids_after_the_first(runs):
    """The two runs of the grid right after the first of a build (the row routes; the engine's walk and the
    sums): batch 32 on two threads, one thread and two threads at batch 128, from their outputs."""
    from conftest import one_line
    later = [grid_medians(report) for report in runs[1:]]
    b32 = [f"{grid[(20, 32, 2)]:.2f} and {grid[(56, 32, 2)]:.2f}" for grid in later]
    one = [m for grid in later for key, m in grid.items() if key[2] == 1]
    b128 = [m for grid in later for key, m in grid.items() if key[2] == 2 and key[1] == 128]
    times = [re.search(r"2026-12-05 (\d\d:\d\d)-(\d\d:\d\d) UTC", (REPO / r).read_text()).groups()
             for r in runs[1:]]
    assert (f"Two more runs of the grid right after, {times[0][0]}-{times[1][1]} UTC ([2]({runs[1]}), "
            f"[3]({runs[2]})): "
            f"batch 32 on two threads gave {b32[0]}, then {b32[1]}; one thread {min(one):.2f}-{max(one):.2f}; two threads "
            f"at batch 128 {min(b128):.2f}-{max(b128):.2f}") in one_line("README.md")


BATCH_64 = ["results/cpu/2026-12-05-amd-epyc-interleaved-steps-batch64.txt",      # the default training run's batch
            "results/cpu/2026-12-05-amd-epyc-interleaved-steps-batch64-images.txt"]


@pytest.mark.parametrize("report", BATCH_64)
def test_the_readme_gives_the_default_runs_batch(report):
    """"ResNet-20's steps at batch 64 ... took 1.02x PyTorch's time on two threads (pairs 0.96-1.11) and 0.97x on
    one (0.95-0.98)": each committed output's medians and ranges."""
    from conftest import one_line
    text = (REPO / report).read_text()
    cells = {}
    for threads, ratios, median in re.findall(r"== --model resnet20 --batch 64 --threads (\d)\n.*?minires / PyTorch: "
                                              r"([\d., ]+) \(median ([\d.]+)\)", text, re.S):
        values = [float(r) for r in ratios.split(", ")]
        cells[int(threads)] = (float(median), min(values), max(values))
    assert sorted(cells) == [1, 2]
    two, one = cells[2], cells[1]
    started = re.search(r"2026-12-05 (\d\d:\d\d)-", text).group(1)
    assert (f"8 pairs each, {started} UTC ([output]({report})), took {two[0]:.2f}x PyTorch's time on two threads (pairs {two[1]:.2f}-{two[2]:.2f}) "
            f"and {one[0]:.2f}x on one ({one[1]:.2f}-{one[2]:.2f})") in one_line("README.md")


BENCH_IMAGES = ["results/cpu/2026-12-05-amd-epyc-2-threads-batch32-images.md",
                "results/cpu/2026-12-05-amd-epyc-2-threads-batch128-images.md",
                "results/cpu/2026-12-05-amd-epyc-1-thread-batch128-images.md",
                "results/cpu/2026-12-05-amd-epyc-1-thread-batch32-images.md"]


def test_the_readme_gives_the_bench_verdicts_of_the_latest_build():
    """"judges the target met on all 12 of its lines: the steps 0.88-0.95x PyTorch's, the peak memory 0.99x":
    the target lines of the four committed `minires bench cpu` reports, each of the run it names."""
    from conftest import one_line
    lines = [re.findall(r"^- target <= 1x \(issue #20\) for (.+): ([\d.]+)x, (\S+)$", (REPO / r).read_text(), re.M)
             for r in BENCH_IMAGES]
    commands = [re.search(r"--threads (\d) --batch (\d+) ", (REPO / r).read_text()).groups() for r in BENCH_IMAGES]
    assert commands == [("2", "32"), ("2", "128"), ("1", "128"), ("1", "32")]
    verdicts = [line for report in lines for line in report]
    steps = [float(x) for what, x, _ in verdicts if "step (" in what]
    memory = {float(x) for what, x, _ in verdicts if "peak memory" in what}
    assert len(verdicts) == 12 and len(steps) == 8 and all(v == "met" for _, _, v in verdicts)
    assert (f"judges the target met on all 12 of its lines: the steps {min(steps):.2f}-{max(steps):.2f}x PyTorch's, "
            f"the peak memory {min(memory):.2f}x") in one_line("README.md") and len(memory) == 1
