"""The committed results (results/<experiment>/...) agree with the code that judges them and with the README.

Each run's verdicts are re-computed from its own recorded numbers by today's claim functions, so a
change in how a claim is judged cannot leave a stale verdict in a committed summary; and the
numbers the README quotes from the responses runs are those runs' numbers.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line

import minires as mr
from minires.experiments import degradation, gradnorms, lesion, responses, shortcuts, seeds
from minires.models import cifar_resnet

ROOT = Path(__file__).parents[1]
HISTORY = ROOT / "results/responses/README.md"   # every responses run, in the order it ran
RUNS = sorted(p.parent for p in (ROOT / "results").glob("**/results.json"))   # the seeds of a combination too


def rejudged(results: dict) -> list[dict]:
    n_test = int(results["data"].split(" / ")[1].split()[0])
    return {"degradation": lambda: degradation.claims(results["runs"]),
            "gradnorms": lambda: gradnorms.claims(results["nets"]),
            "responses": lambda: responses.claims(results["nets"]),
            "lesion": lambda: lesion.claims(results["nets"], n_test),
            "shortcuts": lambda: shortcuts.claims(results["options"], n_test)}[results["experiment"]]()


@pytest.mark.parametrize("folder", RUNS, ids=lambda p: str(p.relative_to(ROOT / "results")))
def test_committed_verdicts_follow_from_their_numbers(folder):
    results = json.loads((folder / "results.json").read_text())
    assert [c["verdict"] for c in rejudged(results)] == [c["verdict"] for c in results["claims"]]
    summary = (folder / "summary.md").read_text()
    assert all(f"**{c['verdict']}**" in summary for c in results["claims"])


def test_every_experiment_has_committed_quick_runs_on_both_datasets():
    names = {(p.parent.name, p.name) for p in RUNS}
    for experiment in ("degradation", "gradnorms", "responses", "lesion", "shortcuts"):
        assert {(experiment, "quick-seed0"), (experiment, "quick-mnist-seed0")} <= names
    assert {("responses", "standard-seed0"), ("responses", "standard-mnist-seed0")} <= names


def _verdicts_said(cell: str) -> list[str]:
    """The verdicts a table cell gives, in order: its text outside parentheses, split at each ';', where a
    part starts with one (the others are remarks on the nets' health)."""
    while re.search(r"\([^()]*\)", cell):
        cell = re.sub(r"\([^()]*\)", "", cell)
    said = [re.match(r"\s*(does not hold|cannot tell|holds)\b", part) for part in cell.split(";")]
    return [verdict.group(1) for verdict in said if verdict]


def test_readme_experiment_table_says_each_runs_verdicts_and_wall_time():
    """Each row of the README's table of experiments: the verdicts it gives for the embedded and the
    MNIST run are their runs' verdicts, claim by claim, and its wall times their runs' (rounded)."""
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if re.match(r"\| (degradation|gradnorms|responses|lesion|shortcuts)\b", line)]
    assert len(rows) == 7
    for row in rows:
        label, _, embedded_cell, mnist_cell, wall_cell = [c.strip() for c in row.strip("|").split(" | ")]
        links = re.findall(r"\[(?:embedded|MNIST)\]\((results/[^)]+)\)", label)
        folders = [ROOT / (link.replace("/README.md", "/quick-seed0") if link.endswith("README.md") else link.rsplit("/", 1)[0])
                   for link in links]
        for folder, cell, wall in zip(folders, (embedded_cell, mnist_cell), wall_cell.split("; "), strict=True):
            results = json.loads((folder / "results.json").read_text())
            assert _verdicts_said(cell) == [c["verdict"].replace(" at this setting", "") for c in results["claims"]], row
            assert wall.startswith(f"{results['wall_seconds']:,.0f} s"), (folder, wall)
            cpu = re.search(r"CPU time ([\d,]+) s", wall)
            assert cpu is None or cpu.group(1) == f"{results['cpu_seconds']:,.0f}", (folder, wall)
            if label.startswith("responses"):
                continue                            # its "A x < B y" pairs: test_readmes_quote_the_responses_runs
            for number in _measured_numbers(cell):
                assert number in _claims_numbers(results["claims"], number), (folder, number)


def test_readme_experiment_table_reads_the_gradnorms_runs_right():
    """The gradnorms cells: which step and tolerance the embedded verdict turns on, the health of the
    nets without BN, and that the MNIST bound is the least of the recorded ratios."""
    readme = one_line(ROOT / "README.md")
    embedded, mnist = (json.loads((ROOT / f"results/gradnorms/{run}/results.json").read_text())
                       for run in ("quick-seed0", "quick-mnist-seed0"))
    closest = min(embedded["claims"][0]["comparisons"], key=lambda c: c["gap"])
    tolerance = re.search(r"tolerance of ([\d.]+) decades", embedded["claims"][0]["noise"]).group(1)
    assert closest["expected"].endswith("plain56 step 59") and closest["gap"] < float(tolerance)
    assert (f"cannot tell: plain-56 at step 59 gives its first conv 10^{closest['larger']:.2f} of the last conv's "
            f"gradient, within {tolerance} decades of the one-decade bound") in readme
    no_bn = embedded["nets"]["resnet56-noBN"]
    norms = dict(zip(no_bn["steps"], (max(step) for step in no_bn["weight_grad_norm"])))
    assert no_bn["health"]["status"] == "dead" and all(norms[step] == 0 for step in (30, 59))
    assert (f"resnet56-noBN flagged dead (weight gradients up to {norms[0]:.1e} at step 0, exactly 0 from step "
            "30)").replace("e+0", "e") in readme
    least = min(c["larger"] for c in mnist["claims"][0]["comparisons"])
    assert mnist["claims"][0]["verdict"] == "holds" and mnist["nets"]["resnet56-noBN"]["health"]["status"] == "diverged"
    assert (f"at least 10^{least:.2f} of the last conv's in plain-20 and plain-56 at every recorded step; "
            "resnet56-noBN flagged diverged") in readme


def test_readme_says_within_the_tolerance_only_of_gaps_within_it():
    """Every "A x vs B y, within 0.05" (or "by less than 0.05") in the README: the gap is below the
    stated number, and the number is the responses experiment's tolerance; and the 1e-4 run the table
    quotes has "every gap [with] the paper's sign, two of four within 0.05"."""
    readme = one_line(ROOT / "README.md")
    said = re.findall(r"(?:ResNet|plain)-\d+ (\d\.\d{3}) (?:vs|<) (?:ResNet|plain)-\d+ (\d\.\d{3}),? "
                      r"(?:within|by less than) ([\d.]+)", readme)
    assert len(said) == 3
    for first, second, bound in said:
        assert abs(float(first) - float(second)) < float(bound) == responses.TOLERANCE
    run = json.loads((ROOT / "results/responses/standard-seed0/results.json").read_text())
    gaps = [c["gap"] for claim in run["claims"] for c in claim["comparisons"]]
    within = sum(g < responses.TOLERANCE for g in gaps)
    assert all(g > 0 for g in gaps) and f"every gap has the paper's sign, {('no', 'one', 'two')[within]} of four within 0.05" in readme


def test_readme_reads_the_responses_at_1e4_and_on_mnist_seed_by_seed():
    """At 1e-4 "the deeper ResNets' responses stay near 1" (within 0.1 on every standard seed); on MNIST
    at 4.4e-3 "the ladder holds on every one of eight seeds" (each run's own verdict)."""
    readme = one_line(ROOT / "README.md")
    runs = [json.loads(p.read_text()) for p in sorted((ROOT / "results/responses").glob("standard-seed[0-9]/results.json"))]
    means = [np.mean(r["nets"][net]["std"]) for r in runs for net in ("resnet56", "resnet110")]
    assert len(runs) == 8 and all(abs(m - 1) < 0.1 for m in means)
    assert "which is why at 1e-4 the deeper ResNets' responses stay near 1" in readme
    mnist = [json.loads(p.read_text()) for p in sorted((ROOT / "results/responses").glob("decay-mnist-seeds/seed[0-9]/results.json"))]
    assert len(mnist) == 8 and all(r["claims"][1]["verdict"] == "holds" for r in mnist)
    assert "the ladder holds on every one of eight seeds" in readme


def _measured_numbers(cell: str) -> list[str]:
    """The measurements a table cell quotes: "loses 47", "noise 3.2", "3.8 points", "26.5%", "1.8 worse", "10^-0.62"."""
    found = re.findall(r"(?:loses |noise )(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)(?= points|%| worse| better)|10\^(-?\d\.\d+)", cell)
    return ["".join(groups) for groups in found]


def _claims_numbers(claims: list[dict], like: str) -> set[str]:
    """Every value the claims compare (each side and the gap's size) and their noise, with as many decimals as ``like``."""
    values = [x for c in claims for pair in c["comparisons"] for x in (pair["smaller"], pair["larger"], abs(pair["gap"]))]
    values += [float(x) for c in claims for x in re.findall(r"(\d+\.\d+) points", c["noise"])]
    decimals = len(like.split(".")[1]) if "." in like else 0
    return {f"{value:.{decimals}f}" for value in values}


COMBINATIONS = {   # each committed seeds.json (the folder it is in): the runs it combines
    "degradation": "degradation/quick-seed[0-9]",
    "responses": "responses/quick-seed[0-9]",
    "responses/standard-seeds": "responses/standard-seed[0-2]",
    "responses/standard-seeds-8": "responses/standard-seed[0-9]",
    "responses/standard-mnist-seeds": "responses/standard-mnist-seed[0-9]",
    "responses/long-seeds": "responses/long-seed[0-9]",
} | {str(p.parent.parent.relative_to(ROOT / "results")): str((p.parent.parent / "seed[0-9]").relative_to(ROOT / "results"))
     for p in (ROOT / "results").glob("*/*/seed0/results.json")}


def test_every_committed_combination_is_named_here():
    assert set(COMBINATIONS) == {str(p.parent.relative_to(ROOT / "results")) for p in (ROOT / "results").glob("**/seeds.json")}


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_committed_combination_is_its_runs_combination(combination):
    """A seeds.json (and so its seeds.md) is what seeds.combine makes of the committed runs it names."""
    runs = sorted((ROOT / "results").glob(COMBINATIONS[combination]))
    combined = seeds.combine(seeds.load_runs(runs))
    committed = json.loads((ROOT / "results" / combination / "seeds.json").read_text())
    assert committed["seeds"] == combined["seeds"] and committed["claims"] == combined["claims"]


def test_readmes_quote_the_responses_runs():
    """Every "ResNet-20 1.083 < plain-20 1.165" in the README and the responses history is a pair of mean
    stds of one committed run, in the order the run has them; every "ResNet-20 1.276 vs plain-20 1.292"
    a pair of one run."""
    quotes = set()
    for path in (ROOT / "results/responses").glob("**/results.json"):
        nets = json.loads(path.read_text())["nets"]
        mean = {name: np.mean(r["std"]) for name, r in nets.items()}
        quotes |= {f"{_display(small)} {mean[small]:.3f} {'<' if mean[small] < mean[large] else 'vs'} "
                   f"{_display(large)} {mean[large]:.3f}" for small in mean for large in mean if small != large}
        quotes |= {q.replace(" < ", " vs ") for q in quotes}
    for text in (ROOT / "README.md", HISTORY):
        found = set(re.findall(r"(?=((?:ResNet|plain)-\d+ \d\.\d{3} (?:<|vs) (?:ResNet|plain)-\d+ \d\.\d{3}))",  # chains too
                               one_line(text)))
        assert found <= quotes, found - quotes
    assert found, "the responses history quotes no pair"


def test_readme_quotes_the_degradation_seeds_combined():
    combined = seeds.combine(seeds.load_runs(sorted((ROOT / "results/degradation").glob("quick-seed[0-9]"))))
    readme = (ROOT / "README.md").read_text()
    for claim, verdict in zip(combined["claims"], ("**holds**", "**cannot tell**")):
        pair = claim["pairs"][0]
        assert claim["verdict"].startswith(verdict.strip("*"))
        gaps = ", ".join(f"{g:+.1f}" for g in pair["gaps"])
        row = f"| {gaps} | {pair['mean']:+.1f}, [{pair['low']:+.1f}, {pair['high']:+.1f}] | {verdict}"
        assert row in readme, row
    assert all(g > 0 for g in combined["claims"][0]["pairs"][0]["gaps"])      # "plain-56 trains worse ... on every seed"


def _quoted(pair: dict) -> str:
    """A combined pair as the READMEs quote it."""
    return (f"{pair['expected']}: gaps {', '.join(f'{g:+.3f}' for g in pair['gaps'])}, mean {pair['mean']:+.3f}, "
            f"95% interval [{pair['low']:+.3f}, {pair['high']:+.3f}], {pair['verdict']}")


def _committed_runs(name: str):
    """A results/responses folder's runs: their results.json, their combination (checked to be the
    committed seeds.json) and the folder's README as one line."""
    folder = ROOT / "results/responses" / name
    runs = sorted(folder.glob("seed[0-9]"))
    combined = seeds.combine(seeds.load_runs(runs))
    assert json.loads((folder / "seeds.json").read_text())["claims"] == combined["claims"]
    results = [json.loads((run / "results.json").read_text()) for run in runs]
    return results, combined, one_line(folder / "README.md")


def _display(name: str) -> str:
    return name.replace("resnet", "ResNet-").replace("plain", "plain-")


@pytest.mark.parametrize("runs, count", [("quick-seed[0-9]", 3), ("standard-seed[0-2]", 3), ("standard-seed[0-9]", 8),
                                         ("standard-mnist-seed[0-9]", 3), ("long-seed[0-9]", 3)])
def test_responses_history_quotes_the_responses_seeds_combined(runs, count):
    combined = seeds.combine(seeds.load_runs(sorted((ROOT / "results/responses").glob(runs))))
    assert len(combined["seeds"]) == count
    readme = one_line(HISTORY)
    for claim in combined["claims"]:
        assert f"**{claim['verdict']}**" in readme
        for pair in claim["pairs"]:
            quoted = _quoted(pair)
            assert quoted in readme, quoted


def test_standard_responses_runs_share_the_quick_runs_nets():
    """The README says a standard run's 20- and 56-layer nets are the quick run's of the same seed, to the
    last digit (seeds 0-2 have both), and quotes ResNet-110's range of training error over the
    standard seeds, the first three and all eight."""
    folder = ROOT / "results/responses"
    errors = []
    for standard in sorted(folder.glob("standard-seed[0-9]")):
        nets = json.loads((standard / "results.json").read_text())["nets"]
        quick = folder / standard.name.replace("standard", "quick") / "results.json"
        if quick.exists():
            quick_nets = json.loads(quick.read_text())["nets"]
            assert {name: nets[name] for name in quick_nets} == quick_nets
        assert nets["resnet110"]["health"]["status"] == "ok"
        errors.append(100 * nets["resnet110"]["final_train_error"])
    readme = one_line(HISTORY)
    assert len(errors) == 8 and sum((folder / f"quick-seed{k}").exists() for k in range(8)) == 3
    for first in (errors[:3], errors):
        assert f"ResNet-110 trains on every seed ({min(first):.1f}-{max(first):.1f}% training error)" in readme


def test_responses_history_names_the_seeds_left_out_of_the_plain_twin_claim_and_why():
    folder = ROOT / "results/responses"
    claim = seeds.combine(seeds.load_runs(sorted(folder.glob("standard-seed[0-9]"))))["claims"][0]
    errors = []
    for seed in claim["seeds_left_out"]:
        plain56 = json.loads((folder / f"standard-seed{seed}" / "results.json").read_text())["nets"]["plain56"]
        assert plain56["health"]["status"] == "under-trained"
        errors.append(f"{100 * plain56['final_train_error']:.1f}%")
    readme = one_line(HISTORY)
    assert claim["seeds_left_out"] == [3, 6] and len(claim["seeds_used"]) == 6
    assert (f"(seeds 3 and 6 are left out by the health rule every run follows: their plain-56 ended at "
            f"{errors[0]} and {errors[1]} training error)") in readme


def test_the_eight_seed_folder_reports_its_combination():
    """results/responses/standard-seeds-8/README.md quotes the eight committed seeds' combination."""
    folder = ROOT / "results/responses"
    plain, ladder = seeds.combine(seeds.load_runs(sorted(folder.glob("standard-seed[0-9]"))))["claims"]
    text = one_line(folder / "standard-seeds-8" / "README.md")
    pair = ladder["pairs"][1]
    assert f"(gaps {', '.join(f'{g:+.3f}' for g in pair['gaps'])}), mean gap {pair['mean']:+.3f}, 95% interval " \
           f"[{pair['low']:+.3f}, {pair['high']:+.3f}] (its lower end is {pair['low']:.4f}): **{ladder['verdict']}**" in text
    quoted = "; ".join(f"{p['expected']}: mean {p['mean']:+.3f}, [{p['low']:+.3f}, {p['high']:+.3f}]" for p in plain["pairs"])
    assert f"It **{plain['verdict']}** over the six seeds whose plain-56 trained ({quoted})" in text


def test_the_4800_iteration_probe_says_what_its_run_shows():
    """Its README: every net trained and both Fig. 7 claims hold against the single-run tolerance."""
    folder = ROOT / "results/responses/probe-4800-seed0"
    results = json.loads((folder / "results.json").read_text())
    assert results["settings"]["iterations"] == 4800 and results["seed"] == 0
    assert all(net["health"]["status"] == "ok" for net in results["nets"].values())
    assert [c["verdict"] for c in responses.claims(results["nets"])] == ["holds", "holds"]
    text = one_line(folder / "README.md")
    assert "every net trained, and both of Fig. 7's claims came out *holds*" in text
    readme = one_line(HISTORY)
    assert "trains every net and gives both Fig. 7 claims *holds* against the single-run tolerance" in readme
    assert f"({folder.name}/README.md), {results['wall_seconds']:,.0f} s)" in readme


def test_the_width8_probe_says_what_its_run_shows():
    """Its README and the history: plain-56 under-trained, ResNet-110 above ResNet-56, both claims cannot
    tell against the single-run tolerance, the gaps and the wall time as the run gives them."""
    folder = ROOT / "results/responses/probe-width8-seed0"
    results = json.loads((folder / "results.json").read_text())
    balanced = json.loads((ROOT / "results/responses/balanced-seeds/seed0/results.json").read_text())["settings"]
    assert results["settings"] == dict(balanced, width=8) and results["seed"] == 0
    assert [c["verdict"] for c in responses.claims(results["nets"])] == ["cannot tell at this setting"] * 2
    health = {name: net["health"]["status"] for name, net in results["nets"].items()}
    assert health == dict.fromkeys(health, "ok") | {"plain56": "under-trained"}
    mean = {name: np.mean(net["std"]) for name, net in results["nets"].items()}
    text = one_line(folder / "README.md")
    assert "(ResNet-20 < plain-20 {:+.3f}, ResNet-56 < plain-56 {:+.3f})".format(
        mean["plain20"] - mean["resnet20"], mean["plain56"] - mean["resnet56"]) in text
    assert "(gap {:+.3f}; ResNet-56 < ResNet-20 {:+.3f})".format(
        mean["resnet56"] - mean["resnet110"], mean["resnet20"] - mean["resnet56"]) in text
    assert "plain-56 is under-trained ({:.1f}% training error)".format(
        100 * results["nets"]["plain56"]["final_train_error"]) in text
    history = one_line(HISTORY)
    assert f"({folder.name}/README.md), {results['wall_seconds']:,.0f} s," in history
    assert f"{results['wall_seconds']:,.0f} s on the 2-core machine" in text
    assert "ResNet-110 above ResNet-56 (gap {:+.3f})".format(mean["resnet56"] - mean["resnet110"]) in history


def test_responses_history_quotes_resnet110s_training_on_mnist_over_the_standard_seeds():
    errors = [100 * json.loads((folder / "results.json").read_text())["nets"]["resnet110"]["final_train_error"]
              for folder in sorted((ROOT / "results/responses").glob("standard-mnist-seed[0-9]"))]
    readme = one_line(HISTORY)
    assert len(errors) == 3 and f"(ResNet-110 {min(errors):.1f}-{max(errors):.1f}% training error)" in readme


def test_readme_quotes_the_quick_start_run():
    """The seed-0 numbers the README gives for its first command are those of the committed run."""
    runs = json.loads((ROOT / "results/degradation/quick-seed0/results.json").read_text())["runs"]
    error = {name: 100 * run["final_train_error"] for name, run in runs.items()}
    readme = one_line(ROOT / "README.md")
    assert (f"With seed 0, plain-56 ends at {error['plain56']:.1f}% training error against plain-20's "
            f"{error['plain20']:.1f}%") in readme
    assert f"ResNet-56 at {error['resnet56']:.1f}% against ResNet-20's {error['resnet20']:.1f}%" in readme
    assert "its output, {:.1f} / {:.1f} / {:.1f} / {:.1f}%,".format(
        *(error[name] for name in ("plain20", "plain56", "resnet20", "resnet56"))) in readme
    results = [json.loads((ROOT / f"results/degradation/quick-seed{k}/results.json").read_text()) for k in range(3)]
    settings = results[0]["settings"]
    assert (f"(widths {settings['width']}/{2 * settings['width']}/{4 * settings['width']} instead of 16/32/64), depths "
            f"{settings['depths'][0]} and {settings['depths'][1]}, {settings['iterations']:,} iterations of batch "
            f"{settings['batch_size']} with the paper's schedule and a {settings['warmup']}-iteration warm-up") in readme
    ratio = results[0]["claims"][1]
    tolerance = re.search(r"tolerance of (\d+) points", ratio["noise"]).group(1)
    assert (f"the {abs(ratio['comparisons'][0]['gap']):.1f}-point gap is within the run's {tolerance}-point "
            "tolerance") in readme and ratio["verdict"] == "cannot tell at this setting"
    walls = [r["wall_seconds"] for r in results]
    assert "({:.0f}, {:.0f} and {:.0f} s on the 2-core machine".format(*walls) in readme
    assert "in 3-6 minutes on an idle 2-core CPU" in readme and 180 <= min(walls) <= max(walls) <= 360


def test_the_planned_long_seeds_are_the_plans_runs_and_their_combination():
    """results/responses/long-seeds: the three seeds the plan fixed (1-3 at 4,800 iterations, the
    probe's seed 0 left out), combined as committed, and its README quoting that combination."""
    folder = ROOT / "results/responses"
    runs = sorted(folder.glob("long-seed[0-9]"))
    plan = one_line(folder / "long-seeds-plan.md")
    assert "`minires experiment responses --standard --iterations 4800 --seeds 1,2,3`" in plan
    for run in runs:
        results = json.loads((run / "results.json").read_text())
        assert (results["mode"], results["settings"]["iterations"]) == ("standard", 4800)
    combined = seeds.combine(seeds.load_runs(runs))
    assert combined["seeds"] == [1, 2, 3]
    committed = json.loads((folder / "long-seeds" / "seeds.json").read_text())
    assert committed["claims"] == combined["claims"]
    plain, ladder = combined["claims"]
    assert all(g > 0 for p in plain["pairs"] for g in p["gaps"])   # "every gap of the paper's sign"
    text = one_line(folder / "long-seeds" / "README.md")
    for claim in (plain, ladder):
        quoted = "; ".join(_quoted(p) for p in claim["pairs"])
        assert f"{quoted}. Verdict: **{claim['verdict']}**" in text, quoted
    errors = [100 * net["final_train_error"] for run in runs
              for net in json.loads((run / "results.json").read_text())["nets"].values()]
    assert f"final training error {min(errors):.1f}-{max(errors):.1f}%" in text
    walls = [json.loads((run / "results.json").read_text())["wall_seconds"] for run in runs]
    assert "{:,.0f}, {:,.0f} and {:,.0f} s".format(*walls) in text
    readme = one_line(HISTORY)
    assert f"ran for {min(walls):,.0f}-{max(walls):,.0f} s per seed" in readme
    seed2 = json.loads((folder / "long-seed2" / "results.json").read_text())["nets"]
    r110, r56 = (np.mean(seed2[name]["std"]) for name in ("resnet110", "resnet56"))
    assert r110 >= r56 and f"({r110:.3f} against {r56:.3f})" in text


# The README's Fig. 7 table: one row per setting, the committed runs it combines, and how it names them.
FIG7_SETTINGS = [
    ("quick: 1,600 iterations, weight decay 1e-4", "quick-seed[0-9]"),
    ("1,600 iterations, weight decay 1e-4, ResNet-110 added (the standard setting until 2026-12-03)",
     "standard-seed[0-9]"),
    ("4,800 iterations, weight decay 1e-4", "long-seed[0-9]"),
    ("**standard**: 1,600 iterations, weight decay 4.4e-3 (the paper's shrinkage)", "decay-seeds/seed[0-9]"),
    ("1,600 iterations, weight decay 1.7e-4 (planned between the two)", "balanced-seeds/seed[0-9]"),
    ("MNIST, 1,600 iterations, weight decay 1e-4", "standard-mnist-seed[0-9]"),
    ("MNIST, **standard** (weight decay 4.4e-3)", "decay-mnist-seeds/seed[0-9]"),
]
FIG7_PAIRS = ("ResNet-20 < plain-20", "ResNet-56 < plain-56", "ResNet-56 < ResNet-20", "ResNet-110 < ResNet-56")


def _fig7_cell(pair: dict | None, used: int, total: int) -> str:
    if pair is None:
        return "not in this setting"
    verdict = pair["verdict"].replace(" at this setting", "")
    cell = verdict if pair["low"] is None else f"{verdict} [{pair['low']:+.3f}, {pair['high']:+.3f}]"
    return cell + (f", {used} of {total} seeds" if used < total else "")


def fig7_row(label: str, runs: str) -> str:
    """The README's table row for ``runs`` (a glob under results/responses), from their combination."""
    combined = seeds.combine(seeds.load_runs(sorted((ROOT / "results/responses").glob(runs))))
    found = {p["expected"]: (p, len(c["seeds_used"])) for c in combined["claims"] for p in c["pairs"]}
    cells = [_fig7_cell(*found.get(name, (None, 0)), len(combined["seeds"])) for name in FIG7_PAIRS]
    return f"| {label} | {', '.join(map(str, combined['seeds']))} | " + " | ".join(cells) + " |"


@pytest.mark.parametrize("label, runs", FIG7_SETTINGS, ids=[r for _, r in FIG7_SETTINGS])
def test_readme_fig7_table_row_is_its_runs_combination(label, runs):
    row = fig7_row(label, runs)
    assert row in (ROOT / "README.md").read_text(), row


def test_the_planned_decay_seeds_are_the_standard_settings_runs_and_their_combination():
    """results/responses/decay-seeds: the plan's four seeds, run with today's standard settings (so
    "these are its committed runs" is true), combined as committed; its README and the main README
    quote them."""
    results, combined, text = _committed_runs("decay-seeds")
    plan = one_line(ROOT / "results/responses/decay-seeds-plan.md")
    assert ("`minires experiment responses --standard --weight-decay 4.4e-3 --seeds 0,1,2,3 --out "
            "results/responses/decay-seeds`") in plan
    standard = json.loads(json.dumps(responses.STANDARD))
    assert all(r["mode"] == "standard" and r["settings"] == standard for r in results)
    assert "1600 iterations, weight decay 0.0044)" in responses.report(results[0])   # the report names the decay
    assert combined["seeds"] == [0, 1, 2, 3]
    plain, ladder = combined["claims"]
    history, readme = one_line(HISTORY), one_line(ROOT / "README.md")
    quoted = "; ".join(_quoted(p) for p in ladder["pairs"])
    assert f"{quoted}. Verdict: **{ladder['verdict']}**" in text and ladder["verdict"] == "holds"
    assert _quoted(ladder["pairs"][1]).replace(", holds", "") in history
    nets = {name: [r["nets"][name] for r in results] for name in results[0]["nets"]}

    def span(values, digits):
        return f"{min(values):.{digits}f}-{max(values):.{digits}f}"
    resnet_errors = [100 * n["final_train_error"] for name in ("resnet20", "resnet56", "resnet110") for n in nets[name]]
    assert all(n["health"]["status"] == "ok" for name in ("resnet20", "resnet56", "resnet110") for n in nets[name])
    assert f"(training error {span(resnet_errors, 1)}%)" in text and f"trained, {span(resnet_errors, 1)}%" in readme
    scales = ", ".join(span([np.mean(n["bn_scale"]) for n in nets[name]], 2) for name in ("resnet20", "resnet56"))
    last = span([np.mean(n["bn_scale"]) for n in nets["resnet110"]], 2)
    assert f"scales {scales} and {last})" in readme and f"0.40-0.47 in ResNet-20, 0.23-0.25 in ResNet-56 and {last}" in text
    plain56 = [n["health"]["status"] for n in nets["plain56"]]
    assert plain56 == ["dead", "dead", "ok", "under-trained"] and plain["seeds_used"] == [2]
    assert "{:.1f}%, {:.1f}%, {:.1f}% and {:.1f}% training error (dead, dead, trained, under-trained)".format(
        *(100 * n["final_train_error"] for n in nets["plain56"])) in text
    assert f"**{plain['verdict']}**" in text and "on 3 of 4 seeds" in readme
    below = [np.mean(r["std"]) - np.mean(p["std"]) for r, p in zip(nets["resnet20"], nets["plain20"])]
    assert all(d > 0 for d in below) and "+{:.3f}, +{:.3f}, +{:.3f}, +{:.3f} in mean std".format(*below) in text
    assert f"plain-20, at {span([100 * n['final_train_error'] for n in nets['plain20']], 1)}% training error" in readme
    assert "{:.0f}, {:.0f}, {:.0f} and {:.0f} s".format(*(r["wall_seconds"] for r in results)) in text


def test_the_planned_mnist_decay_seeds_and_what_their_readmes_say():
    """results/responses/decay-mnist-seeds: the two plans' eight MNIST seeds at today's standard settings,
    combined as committed; the READMEs quote the combination, the training and the odd seeds."""
    results, combined, text = _committed_runs("decay-mnist-seeds")
    standard = json.loads(json.dumps(responses.STANDARD))
    assert all(r["mode"] == "standard" and r["settings"] == standard and r["data"].startswith("mnist") for r in results)
    assert combined["seeds"] == list(range(8))
    for claim in combined["claims"]:
        assert "; ".join(_quoted(p) for p in claim["pairs"]) + f". Verdict: **{claim['verdict']}**" in text
    plain, ladder = combined["claims"]
    assert plain["seeds_left_out"] == [3] and "so seed 3 is left out of the plain-twin claim" in text
    shallow, deep = plain["pairs"]
    negative = [seed for seed, g in zip(plain["seeds_used"], shallow["gaps"]) if g < 0]
    assert all(g > 0 for g in deep["gaps"]) and negative == [6, 7] and "not on seeds 6 and 7" in text
    assert all(g > 0 for g in ladder["pairs"][1]["gaps"]) and "ResNet-110 below ResNet-56 on every seed" in text
    nets = {name: [100 * r["nets"][name]["final_train_error"] for r in results] for name in results[0]["nets"]}
    resnets = nets["resnet20"] + nets["resnet56"] + nets["resnet110"]
    plain56 = f"{min(nets['plain56']):.1f}-{max(nets['plain56']):.1f}%"
    assert f"({min(resnets):.1f}-{max(resnets):.1f}% training error)" in text and f"plain-56 ends at {plain56}" in text
    history = one_line(HISTORY)
    pair = ladder["pairs"][1]
    assert f"({plain56} training error)" in history
    assert f"mean {pair['mean']:+.3f}, 95% interval [{pair['low']:+.3f}, {pair['high']:+.3f}])" in history
    assert f"holds ([{deep['low']:+.3f}, {deep['high']:+.3f}])" in history
    ladder_gaps = ladder["pairs"][0]["gaps"]
    assert f"more than its own ResNet-56 by {ladder_gaps[6]:.3f}" in text and ladder_gaps[6] > 2 * max(ladder_gaps[:6] + ladder_gaps[7:])
    walls = ", ".join(f"{r['wall_seconds']:.0f}" for r in results[:-1]) + f" and {results[-1]['wall_seconds']:.0f} s"
    assert walls in text


def test_every_relative_link_of_the_readme_and_the_results_resolves():
    """A moved or renamed run folder must not leave a dead link in README.md or results/**/*.md."""
    dead = []
    for page in [ROOT / "README.md", *ROOT.glob("results/**/*.md")]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#")[0]
            if path and "://" not in path and not (page.parent / path).exists():
                dead.append(f"{page.relative_to(ROOT)}: {target}")
    assert not dead, dead


def _scale_free_and_held_stds(folder: Path, net: str) -> tuple[list[float], list[float]]:
    """Per seed under ``folder``: the mean response std of ``net``'s scale-free layers, and of its others.
    Which layers are scale-free is found on a fresh net of the same architecture (it is the architecture's)."""
    results = [json.loads((run / "results.json").read_text())["nets"][net] for run in sorted(folder.glob("seed[0-9]"))]
    mr.manual_seed(0)
    fresh = cifar_resnet(results[0]["depth"], residual=results[0]["residual"], width=4)
    free = set(responses.scale_free_layers(fresh, np.random.default_rng(0).standard_normal((4, 3, 16, 16))))
    split = [[np.mean([s for name, s in zip(r["layers"], r["std"]) if (name in free) == wanted]) for r in results]
             for wanted in (True, False)]
    return split[0], split[1]


def test_readme_reads_the_plain_twin_reversal_from_the_scale_free_responses():
    """The reading, in the README and the docstring, of why plain-20 responds less than ResNet-20 at 4.4e-3:
    the layer counts, the spans of the scale-free and held-up responses on the embedded seeds, and the
    MNIST seed count."""
    readme = one_line(ROOT / "README.md")
    images = np.random.default_rng(0).standard_normal((4, 3, 16, 16))
    counts = []
    for residual in (False, True):
        mr.manual_seed(0)
        model = cifar_resnet(20, residual=residual, width=4)
        counts.append((len(responses.scale_free_layers(model, images)), len(responses.response_layers(model))))
    assert counts == [(18, 19), (9, 19)] and "18 of plain-20's 19 responses, and 9 of ResNet-20's" in readme
    docstring = " ".join(responses.__doc__.split())
    assert "18 of its 19 responses are scale-free" in docstring and "against 9 of ResNet-20's" in docstring

    def span(values):
        return f"{min(values):.2f}-{max(values):.2f}"
    embedded = ROOT / "results/responses/decay-seeds"
    plain_free, _ = _scale_free_and_held_stds(embedded, "plain20")
    resnet_free, resnet_held = _scale_free_and_held_stds(embedded, "resnet20")
    assert (f"(mean std {span(plain_free)} in plain-20, {span(resnet_free)} in ResNet-20, seeds 0-3), while "
            f"ResNet-20's held-up ones stay larger ({span(resnet_held)})") in readme
    assert min(resnet_held) > max(plain_free + resnet_free)
    means = {net: [np.mean(json.loads((run / "results.json").read_text())["nets"][net]["std"])
                   for run in sorted(embedded.glob("seed[0-9]"))] for net in ("plain20", "resnet20")}
    assert all(p < r for p, r in zip(means["plain20"], means["resnet20"])) and "responds less on every seed" in readme
    mnist = ROOT / "results/responses/decay-mnist-seeds"
    smaller = sum(r < p for r, p in zip(_scale_free_and_held_stds(mnist, "resnet20")[0],
                                        _scale_free_and_held_stds(mnist, "plain20")[0]))
    assert f"scale-free responses end smaller than plain-20's on {smaller} of the 8 seeds" in readme


def test_the_runs_without_numba_are_a_record_of_rounding_and_their_readme_says_so():
    """results/responses/balanced-no-numba: four seeds of the balanced plan's command run without Numba
    (not the plan's environment). Their combination is as committed, and their README quotes it, the
    unhealthy plain-56, the wall times, and seed 0 against the same seed in the planned environment."""
    results, combined, text = _committed_runs("balanced-no-numba")
    assert [r["seed"] for r in results] == [0, 1, 2, 3]
    assert all(r["settings"] == results[0]["settings"] and r["settings"]["weight_decay"] == 1.7e-4 for r in results)
    plain, ladder = combined["claims"]
    assert plain["seeds_used"] == [0, 1] and plain["verdict"] == ladder["verdict"] == "cannot tell at this setting"
    assert "ResNet-20 < plain-20: gaps {:+.3f}, {:+.3f}".format(*plain["pairs"][0]["gaps"]) in text
    deep, shallow = ladder["pairs"][1], ladder["pairs"][0]
    assert _quoted(deep).replace(", cannot tell at this setting", ": **cannot tell at this setting**") in text
    assert f"ResNet-56 < ResNet-20 holds ([{shallow['low']:+.3f}, {shallow['high']:+.3f}])" in text
    assert "at {:.1f}% and {:.1f}% training error".format(
        *(100 * r["nets"]["plain56"]["final_train_error"] for r in results[2:])) in text
    assert "({:.0f}, {:.0f}, {:.0f} and {:.0f} s)".format(*(r["wall_seconds"] for r in results)) in text
    planned = json.loads((ROOT / "results/responses/balanced-seeds/seed0/results.json").read_text())["nets"]

    def gaps(nets):
        mean = {name: np.mean(net["std"]) for name, net in nets.items()}
        return [mean["plain20"] - mean["resnet20"], mean["plain56"] - mean["resnet56"], mean["resnet56"] - mean["resnet110"]]
    here, there = gaps(results[0]["nets"]), gaps(planned)
    others = [gaps(json.loads((ROOT / f"results/responses/balanced-seeds/seed{k}/results.json").read_text())["nets"])
              for k in range(1, 8)]
    nearer = [sum(abs(o[i] - there[i]) < abs(here[i] - there[i]) for o in others) for i in range(3)]
    assert nearer == [4, 0, 4]        # beyond the median other seed for the depth-20 and the ladder pair, not depth 56
    assert ("moves two of seed 0's three gaps further than going from seed 0 to the median other planned seed does "
            "(ResNet-20 < plain-20 and ResNet-110 < ResNet-56; 4 of the 7 other seeds are nearer), and the third, "
            "ResNet-56 < plain-56, less than to any of them") in text
    assert "ResNet-20 < plain-20 {:+.3f} against {:+.3f}, ResNet-56 < plain-56 {:+.3f} against {:+.3f}, ResNet-110 < " \
           "ResNet-56 {:+.3f} against {:+.3f}".format(*(g for pair in zip(here, there) for g in pair)) in text
    assert "plain-56 ends at {:.1f}% against {:.1f}%".format(
        100 * results[0]["nets"]["plain56"]["final_train_error"], 100 * planned["plain56"]["final_train_error"]) in text


def test_the_planned_balanced_seeds_and_what_the_readmes_say():
    """results/responses/balanced-seeds: the plan's command and eight seeds at weight decay 1.7e-4, the
    combination as committed; its README quotes every pair, each claim's verdict, the nets' health and
    the wall times, and what the plan's outcome rule makes of them; the history quotes the verdicts."""
    results, combined, text = _committed_runs("balanced-seeds")
    plan = one_line(ROOT / "results/responses/balanced-decay-plan.md")
    assert ("`minires experiment responses --standard --weight-decay 1.7e-4 --seeds 0,1,2,3,4,5,6,7 --out "
            "results/responses/balanced-seeds`") in plan
    assert all(r["settings"] == dict(json.loads(json.dumps(responses.STANDARD)), weight_decay=1.7e-4) for r in results)
    assert combined["seeds"] == list(range(8))
    history = one_line(HISTORY)
    for claim in combined["claims"]:
        quoted = "; ".join(_quoted(p) for p in claim["pairs"])
        assert f"{quoted}. Verdict: **{claim['verdict']}**" in text, quoted
        assert f"**{claim['verdict']}**" in history
    holds_both = all(c["verdict"] == "holds" for c in combined["claims"])
    assert responses.STANDARD["weight_decay"] == (1.7e-4 if holds_both else 4.4e-3)   # the plan's outcome rule
    assert "{:.0f}, {:.0f}, {:.0f}, {:.0f}, {:.0f}, {:.0f}, {:.0f} and {:.0f} s".format(
        *(r["wall_seconds"] for r in results)) in text
    errors = {name: [100 * r["nets"][name]["final_train_error"] for r in results] for name in results[0]["nets"]}
    status = {name: [r["nets"][name]["health"]["status"] for r in results] for name in results[0]["nets"]}
    resnets = [e for name in ("resnet20", "resnet56", "resnet110") for e in errors[name]]
    assert all(s == "ok" for name in ("resnet20", "resnet56", "resnet110") for s in status[name])
    assert f"every ResNet of every seed trained ({min(resnets):.1f}-{max(resnets):.1f}% training error)" in text
    trained = [i for i, s in enumerate(status["plain56"]) if s == "ok"]
    assert all(s == "ok" for s in status["plain20"])
    assert f"plain-20 ({min(errors['plain20']):.1f}-{max(errors['plain20']):.1f}%)" in text
    assert "Plain-56 trained on seeds 0-3 and 7 ({:.1f}-{:.1f}%)".format(
        *(f(errors["plain56"][i] for i in trained) for f in (min, max))) in text and trained == [0, 1, 2, 3, 7]
    assert "on seed 4 ({}), {:.1f}% on seed 5 ({}), {:.1f}% on seed 6 ({})".format(
        status["plain56"][4], *(x for i in (5, 6) for x in (errors["plain56"][i], status["plain56"][i]))) in text
    twin20, ladder110 = combined["claims"][0]["pairs"][0], combined["claims"][1]["pairs"][1]
    assert f"(standard deviation {ladder110['std']:.3f})" in text and f"twin's ({twin20['std']:.3f})" in text
    assert "plain twin {:+.3f}, ResNet-110 < ResNet-56 {:+.3f}".format(twin20["mean"], ladder110["mean"]) in text
    at_1e4 = seeds.combine(seeds.load_runs(sorted((ROOT / "results/responses").glob("standard-seed[0-9]"))))
    spread = twin20["std"] / at_1e4["claims"][0]["pairs"][0]["std"]
    assert f"four times the {at_1e4['claims'][0]['pairs'][0]['std']:.3f} seen at 1e-4" in text and round(spread) == 4
    readme = one_line(ROOT / "README.md")
    assert ("the depth-20 gaps spread four times as widely as at 1e-4, and plain-56 did not train on "
            f"{8 - len(trained)} of 8 seeds") in readme


def test_readme_quotes_the_default_training_run():
    """The README's accuracy and per-epoch errors for ``minires train --model resnet20`` are those of the
    committed run's metrics.jsonl, and the run is the README's default: 4 epochs on the embedded data."""
    folder = ROOT / "results/train/resnet20-synthetic"
    epochs = [row for row in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines()) if row["kind"] == "epoch"]
    readme = one_line(ROOT / "README.md")
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4] and epochs[-1]["iteration"] == 4 * -(-10_000 // 64)
    errors = [f"{100 * e['test_error']:.2f}".rstrip("0").rstrip(".") for e in epochs]
    assert f"**{100 * epochs[-1]['test_accuracy']:.2f}% held-out accuracy** on the 2,000 embedded test images" in readme
    assert f"(test error {', '.join(errors[:-1])}, {errors[-1]}% after epochs 1-4" in readme
    assert f"[bit for bit]({folder.relative_to(ROOT)}/README.md)" in readme
    speeds = [e["images_per_second"] for e in epochs]
    assert f"({min(speeds):.0f}-{max(speeds):.0f} images/s per epoch" in one_line(folder / "README.md")


RESPONSES_PAGES = sorted(p for p in (ROOT / "results/responses").glob("**/*.md") if p.name not in ("seeds.md", "summary.md"))


@pytest.mark.parametrize("page", RESPONSES_PAGES, ids=lambda p: str(p.relative_to(ROOT / "results/responses")))
def test_every_wall_time_and_interval_a_responses_page_quotes_is_a_committed_one(page):
    """The hand-written pages of results/responses (history, plans, folders' READMEs): every wall time
    ("1,890 s", "648-1,151 s") is a committed run's, every 95% interval ("[+0.020, +0.058]") a committed
    combination's pair."""
    walls = {f"{json.loads(p.read_text())['wall_seconds']:,.0f}" for p in (ROOT / "results").glob("**/results.json")}
    intervals = {f"[{pair['low']:+.3f}, {pair['high']:+.3f}]" for p in (ROOT / "results").glob("**/seeds.json")
                 for claim in json.loads(p.read_text())["claims"] for pair in claim["pairs"] if pair["low"] is not None}
    text = one_line(page)
    quoted = [w for pair in re.findall(r"(\d[\d,]*)(?:-(\d[\d,]*))? s\b", text) for w in pair if w]
    assert set(quoted) <= walls, set(quoted) - walls
    assert set(re.findall(r"\[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", text)) <= intervals


def test_the_responses_history_reads_its_runs_right():
    """Numbers of the history page that are not a wall time, an interval or a pair of mean stds."""
    history = one_line(HISTORY)
    assert f"Student's t is wide ({seeds.t95(2):.2f} standard errors)" in history
    ladder = seeds.combine(seeds.load_runs(sorted((ROOT / "results/responses").glob("standard-seed[0-9]"))))["claims"][1]
    assert f"(the interval's lower end is {ladder['pairs'][1]['low']:.4f})" in history
    quick = json.loads((ROOT / "results/responses/quick-mnist-seed0/results.json").read_text())["nets"]
    errors = [100 * net["final_train_error"] for net in quick.values()]
    assert all(net["health"]["status"] == "ok" for net in quick.values())
    assert f"all four nets trained ({min(errors):.1f}-{max(errors):.1f}% training error)" in history
    standard = json.loads((ROOT / "results/responses/standard-mnist-seed0/results.json").read_text())["nets"]["resnet110"]
    assert f"ResNet-110, which trains ({100 * standard['final_train_error']:.1f}% training error)" in history
    twin20 = seeds.combine(seeds.load_runs(sorted((ROOT / "results/responses").glob("standard-mnist-seed[0-9]"))))[
        "claims"][0]["pairs"][0]
    assert all(g > 0 for g in twin20["gaps"])
    assert f"its depth-20 interval reaching {-twin20['low']:.3f} below zero with every gap positive" in history
    for folder, seeds_named in (("decay-seeds", "seeds 0, 1 and 3"), ("balanced-seeds", "seeds 4, 5 and 6")):
        runs = [json.loads(p.read_text()) for p in sorted((ROOT / "results/responses" / folder).glob("seed[0-9]/results.json"))]
        unhealthy = [r["seed"] for r in runs if r["nets"]["plain56"]["health"]["status"] in ("dead", "under-trained")]
        assert seeds_named == "seeds " + ", ".join(map(str, unhealthy[:-1])) + f" and {unhealthy[-1]}"
        assert f"dead or under-trained on {seeds_named}" in history or f"under-trained or dead on {seeds_named}" in history
    mnist = [json.loads(p.read_text())
             for p in sorted((ROOT / "results/responses/decay-mnist-seeds").glob("seed[0-9]/results.json"))]
    reversed_twin20 = [r["seed"] for r in mnist if np.mean(r["nets"]["resnet20"]["std"]) > np.mean(r["nets"]["plain20"]["std"])]
    assert reversed_twin20 == [6, 7] and "seeds 6 and 7 go the other way" in history


def test_the_degradation_page_reads_its_runs_right():
    """results/degradation/README.md, for the committed runs: each seed's row (train / test errors, the
    gaps, the verdicts), their health, wall and CPU times, the combination, and MNIST's seed 0."""
    folder = ROOT / "results/degradation"
    page = one_line(folder / "README.md")
    results = [json.loads((folder / f"quick-seed{k}/results.json").read_text()) for k in range(3)]
    order = ("plain20", "plain56", "resnet20", "resnet56")
    for r in results:
        err = {name: (100 * r["runs"][name]["final_train_error"], 100 * r["runs"][name]["final_test_error"]) for name in order}
        cells = " | ".join(f"{train:.1f} / {test:.1f}" for train, test in err.values())
        gaps = f"{err['plain56'][0] - err['plain20'][0]:+.1f} | {err['resnet56'][0] - err['resnet20'][0]:+.1f}"
        verdicts = "; ".join(c["verdict"].replace(" at this setting", "") for c in r["claims"])
        assert f"| {r['seed']} | {cells} | {gaps} | {verdicts} |" in page
        assert [r["runs"][name]["health"]["status"] for name in order] == ["ok", "under-trained", "ok", "ok"]
    assert "No net is dead or diverged; plain-56 is flagged under-trained (above 50% training error) on every seed" in page
    cpu = [r["cpu_seconds"] for r in results]
    assert "Wall time {:.0f}, {:.0f} and {:.0f} s".format(*(r["wall_seconds"] for r in results)) in page
    assert f"CPU time {min(cpu):.0f}-{max(cpu):.0f} s" in page
    plain, resnet = (claim["pairs"][0] for claim in json.loads((folder / "seeds.json").read_text())["claims"])
    for pair, verdict in ((plain, "**holds**"), (resnet, "**cannot tell**")):
        gaps = ", ".join(f"{g:+.1f}" for g in pair["gaps"])
        assert (f"gaps {gaps}{' points' if pair is plain else ''}, mean {pair['mean']:+.1f}, interval "
                f"[{pair['low']:+.1f}, {pair['high']:+.1f}]: {verdict}") in page
    mnist = json.loads((folder / "quick-mnist-seed0/results.json").read_text())
    e = {name: 100 * mnist["runs"][name]["final_train_error"] for name in order}
    assert (f"Plain-20 {e['plain20']:.1f}%, plain-56 {e['plain56']:.1f}%, ResNet-20 {e['resnet20']:.1f}%, "
            f"ResNet-56 {e['resnet56']:.1f}% training error") in page
    assert f"the ResNet one cannot tell ({e['resnet20'] - e['resnet56']:.1f} points, within the 5-point tolerance)" in page
    assert [c["verdict"] for c in mnist["claims"]] == ["holds", "cannot tell at this setting"]
    seed0 = 100 * results[0]["runs"]["plain56"]["final_train_error"]
    assert f"plain-56 ends at 67.8% here, {seed0:.1f}% with the row columns" in page


def test_the_planned_folders_readmes_read_their_runs_right():
    """The numbers of the planned folders' READMEs that are not a wall time, an interval or a pair of
    mean stds (those are checked on every page above)."""
    responses_dir = ROOT / "results/responses"

    def page(folder):
        return one_line(responses_dir / folder / "README.md")

    def runs(pattern):
        return [json.loads(p.read_text()) for p in sorted(responses_dir.glob(f"{pattern}/results.json"))]
    decay = runs("decay-seeds/seed[0-9]")
    plain20 = ", ".join(f"{100 * r['nets']['plain20']['final_train_error']:.1f}%" for r in decay).rsplit(", ", 1)
    scales = [np.mean(r["nets"]["plain20"]["bn_scale"]) for r in decay]
    assert (f"Plain-20 trains but badly ({' and '.join(plain20)}), its BN scales shrunk to "
            f"{min(scales):.2f}-{max(scales):.2f}") in page("decay-seeds")

    ladder_8 = seeds.combine(seeds.load_runs(sorted(responses_dir.glob("decay-mnist-seeds/seed[0-9]"))))["claims"][1]["pairs"][1]
    ladder_3 = seeds.combine(seeds.load_runs(sorted(responses_dir.glob("standard-mnist-seed[0-9]"))))["claims"][1]["pairs"][1]
    assert round(ladder_8["mean"] / ladder_3["mean"]) == 3 and all(g > 0 for g in ladder_8["gaps"])
    assert (f"by about three times the margin of the runs at weight decay 1e-4 on MNIST (mean gap "
            f"{ladder_3['mean']:+.3f} there)") in page("decay-mnist-seeds")
    seed6 = runs("decay-mnist-seeds/seed6")[0]["nets"]
    above = np.mean(seed6["resnet20"]["std"]) - np.mean(seed6["plain20"]["std"])
    assert f"seed 6's ResNet-20 responds more than its plain twin by {above:.3f}" in page("decay-mnist-seeds")

    long = runs("long-seed[0-9]")
    errors = [100 * net["final_train_error"] for r in long for net in r["nets"].values()]
    highest = [100 * max(net["final_train_error"] for net in r["nets"].values()) for r in long]
    assert highest == [100 * r["nets"]["plain56"]["final_train_error"] for r in long]
    assert (f"(final training error {min(errors):.1f}-{max(errors):.1f}%; plain-56 is the highest at {highest[0]:.1f}%, "
            f"{highest[1]:.1f}% and {highest[2]:.1f}%), so no seed is left out of any claim") in page("long-seeds")
    assert all(not c["seeds_left_out"] for c in json.loads((responses_dir / "long-seeds/seeds.json").read_text())["claims"])
    assert f"Student's t with 2 degrees of freedom: {seeds.t95(2):.2f} standard errors" in page("long-seeds")

    standard = runs("standard-seed[0-9]")
    r110 = [100 * r["nets"]["resnet110"]["final_train_error"] for r in standard]
    assert f"(ResNet-110's training error {min(r110):.1f}-{max(r110):.1f}%)" in page("standard-seeds-8")
    looks = [seeds.combine(seeds.load_runs(sorted(responses_dir.glob(g))))["claims"][1]["verdict"]
             for g in ("standard-seed[0-2]", "standard-seed[0-9]")]
    assert "holds" not in looks and "neither look gave *holds*" in page("standard-seeds-8")
    left = [r for r in standard if r["nets"]["plain56"]["health"]["status"] != "ok"]
    assert [r["seed"] for r in left] == [3, 6] and "Seeds 3 and 6 are left out of it" in page("standard-seeds-8")
    assert "their plain-56 ended at {:.1f}% and {:.1f}%".format(
        *(100 * r["nets"]["plain56"]["final_train_error"] for r in left)) in page("standard-seeds-8")


def _bench_rows(report: Path) -> dict:
    """A committed ``minires bench cpu`` report's step, all-convs and memory rows: {case: (minires, torch, ratio)}."""
    rows, text = {}, report.read_text()
    for case in re.findall(r"^(?:step|conv)  (resnet\d+(?: batch \d+|: all 19 convs))\s+torch\s", text, re.M):
        times = [re.search(rf"^(?:step|conv)  {re.escape(case)}\s+{impl}\s+fp32(?:\s+\S+){{2}}\s+([\d.]+)\s+([\d.]+)", text, re.M)
                 for impl in ("torch", "numpy-fast")]
        rows[case] = (float(times[1].group(1)), float(times[0].group(1)), float(times[1].group(2)))
    memory = re.search(r"^step\s+(resnet20 batch \d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", text, re.M)
    rows["memory"] = tuple(float(memory.group(k)) for k in (2, 3, 4))
    return rows


@pytest.mark.parametrize("suffix", ["-rows", ""], ids=["row columns", "column matrix"])
def test_readme_cpu_tables_quote_their_reports(suffix):
    """Each cell of the README's two CPU tables that a committed report holds (the first run of each
    configuration): minires' and PyTorch's times, the first ratio in brackets, and the peak memory."""
    readme = (ROOT / "README.md").read_text()
    reports = {(threads, batch): _bench_rows(ROOT / f"results/cpu/2026-12-03-amd-epyc-{threads}-batch{batch}{suffix}.md")
               for threads in ("2-threads", "1-thread") for batch in (128, 32)}
    lines = readme.split(f"batch128{suffix}.md)", 1)[1].split("\n\n")[1].splitlines()

    def cells(case, batch):
        out = []
        for threads in ("2-threads", "1-thread"):
            minires_ms, torch_ms, ratio = reports[threads, batch][case]
            out.append(f"{minires_ms:,.0f} ms | {torch_ms:,.0f} ms | ")
            out.append(f"({ratio:.2f}, ")
        return out
    for label, case, batch in (("ResNet-20 step, batch 128", "resnet20 batch 128", 128),
                               ("ResNet-56 step, batch 128", "resnet56 batch 128", 128),
                               ("ResNet-20's 19 convs, fwd + bwd, batch 128", "resnet20: all 19 convs", 128),
                               ("ResNet-20 step, batch 32", "resnet20 batch 32", 32),
                               ("ResNet-56 step, batch 32", "resnet56 batch 32", 32)):
        row = next(line for line in lines if line.startswith(f"| {label} |"))
        assert all(c in row for c in cells(case, batch)), (row, cells(case, batch))
    row = next(line for line in lines if line.startswith("| ResNet-20 step, peak extra memory"))
    for threads in ("2-threads", "1-thread"):
        (m128, t128, r128), (m32, t32, r32) = reports[threads, 128]["memory"], reports[threads, 32]["memory"]
        assert f"| {m128:.0f} / {m32:.0f} MiB | {t128:.0f} / {t32:.0f} MiB | {r128:.2f} / {r32:.2f} |" in row


def test_cpu_docstrings_quote_the_readmes_cpu_measurements():
    """The times and ratios that minires.cpu's docstrings quote from the README's "Performance (CPU)",
    read out of each docstring and looked up in the README's own sentence, so neither can drift alone."""
    import minires.cpu
    from minires.cpu import conv, pointwise
    readme = one_line("README.md")

    def said(doc, pattern):
        found = re.search(pattern, " ".join(doc.split()))
        assert found, pattern
        return found.groups()
    numba, fast = said(minires.cpu.__doc__, r"\((\d+) against (\d+) ms per ResNet-20 step at batch 128 on 2 cores, 2026-12-04; README\)")
    assert f"on 2 threads takes {numba} ms with it, against {fast} ms with `numpy-fast`" in readme
    fought, = said(minires.cpu.__doc__, r"\(([\d.]+) s per step while BLAS still had threads of its own\)")
    assert f"fought over the cores ({fought} s per ResNet-20 step at batch 128)" in readme
    convs, step = said(conv.__doc__, r"the convs take ([\d.-]+x) the time of the column-matrix path \(``numpy-columns``\), the step ([\d.-]+x)")
    assert f"ResNet-20's convs take {convs} the time and its step {step} (batch 32" in readme
    convs, step = said(conv.__doc__, r"ResNet-20's convs take ([\d.-]+x) the time of ``numpy-padded-rows``, the step ([\d.-]+x)")
    assert f"ResNet-20's convs take {convs} the time and its step {step}, with no clear difference" in readme
    faster, = said(conv.__doc__, r"32-pixel layers that is (\d+x) faster than col2im \(README\)")
    assert f"({faster} faster than col2im on the 32-pixel layers)" in readme
    less, = said(conv.__doc__, r"instead of two: ([\d-]+%) less time, the 16-channel layers gaining most")
    assert f"instead of two, {less} less time (the 16-channel layers gain most)" in readme
    records, = said(conv.numpy_im2col.__doc__, r"copied whole, element by element: ([\d.-]+x) faster than the same copy of floats")
    assert f"as whole records of a NumPy void dtype, {records} faster than copying them as floats" in readme
    gain, = said(pointwise.__doc__, r"helps them less than the conv \(([\d.-]+x) on the 2-core machine of the README\)")
    assert f"batch norm and ReLU, a few fast passes over memory each, gain only {gain}" in readme
    one, split = said(pointwise.map_pass.__doc__, r"took ([\d.]+) ms this way against ([\d.]+) ms split; README")
    assert f"(batch 16: {split} -> {one} ms per step)" in readme
    slower, = said(pointwise.zeros_image.__doc__, r"runs that loop (about \d+x slower)")
    assert f"with a broadcast scalar, {slower}" in readme


def test_the_responses_history_gives_the_long_seeds_minutes():
    """"33-54 minutes per seed on 2 cores": the wall times of results/responses/long-seed{1,2,3}, in minutes."""
    runs = [json.loads(p.read_text()) for p in sorted((ROOT / "results/responses").glob("long-seed[0-9]/results.json"))]
    minutes = [r["wall_seconds"] / 60 for r in runs]
    assert len(runs) == 3 and all(r["cores"] == 2 for r in runs)
    assert f"`results/responses/long-seeds`, {min(minutes):.0f}-{max(minutes):.0f} minutes per seed on 2 cores)" in one_line(HISTORY)


def test_the_gpu_page_quotes_the_committed_cpu_training_run():
    """results/gpu/README.md puts the GPU's accuracy and time beside "the CPU run of the main README": the
    accuracy of the committed CPU run (results/train/resnet20-synthetic), and the README's latest time; the
    README's GPU section quotes the same accuracy."""
    rows = (ROOT / "results/train/resnet20-synthetic/metrics.jsonl").read_text().splitlines()
    accuracy = [row for row in map(json.loads, rows) if row["kind"] == "epoch"][-1]["test_accuracy"]
    page = one_line(ROOT / "results/gpu/README.md")
    assert f"(the CPU run of the main README: {100 * accuracy:.2f}%)" in page
    assert f"({100 * accuracy:.2f}% on the CPU)" in one_line(ROOT / "README.md")
    seconds = float(re.search(r"minires ([\d.]+) s, [\d.]+% again \(the same bits\)", one_line(ROOT / "README.md")).group(1))
    assert f"({seconds:.0f} s on the 2-core CPU)" in page


TIME_TO_ACCURACY = ["results/train/2026-12-04-amd-epyc-time-to-accuracy.md",
                    "results/train/2026-12-04-amd-epyc-time-to-accuracy-numba-regions.md",
                    "results/train/2026-12-05-amd-epyc-time-to-accuracy-sums-regions.md",
                    "results/train/2026-12-05-amd-epyc-time-to-accuracy-every-size.md",
                    "results/train/2026-12-05-amd-epyc-time-to-accuracy-conv-rows.md",
                    "results/train/2026-12-05-amd-epyc-time-to-accuracy-engine.md",
                    "results/train/2026-12-05-amd-epyc-time-to-accuracy-eval.md",
                    "results/train/2026-12-05-amd-epyc-time-to-accuracy-images.md"]   # the newest last


@pytest.mark.parametrize("record", TIME_TO_ACCURACY)
def test_the_readmes_times_to_accuracy_are_the_committed_records(record):
    """"Performance (CPU)" quotes the three timed pairs of the default run and PyTorch's of each record
    (each time and the ratios), "Training a ResNet" those of the newest (their ranges and the images/s);
    the training section names among the earlier builds' accuracies the one the Performance section reports."""
    readme = one_line(ROOT / "README.md")
    pairs = [row.split(" | ") for row in re.findall(r"^\| \d \| (.+) \|$", (ROOT / record).read_text(), re.M)]
    assert len(pairs) == 3
    minires_s, torch_s = [float(p[0]) for p in pairs], [float(p[2]) for p in pairs]
    rates = [int(r) for p in pairs for r in p[1].split(", ")]
    ratios = [float(p[4]) for p in pairs]
    assert ratios == [round(m / t, 2) for m, t in zip(minires_s, torch_s)]
    training = (f"in **{min(minires_s):.0f}-{max(minires_s):.0f} s** over three runs ({min(rates)}-{max(rates)} "
                f"images/s per epoch; PyTorch on the same recipe, taking turns with it: {min(torch_s):.0f}-"
                f"{max(torch_s):.0f} s; [the record]({record})")
    assert (training in readme) == (record == TIME_TO_ACCURACY[-1])
    text = one_line(ROOT / record)
    ours = re.search(r"Every minires run gave ([\d.]+)% held-out accuracy", text).group(1)
    theirs = re.search(r"every PyTorch run gave ([\d.]+)%", text).group(1)
    assert (f"minires {minires_s[0]:.1f}, {minires_s[1]:.1f} and {minires_s[2]:.1f} s, {ours}% each (the same bits") in readme
    assert (f"PyTorch {torch_s[0]:.1f}, {torch_s[1]:.1f} and {torch_s[2]:.1f} s, {theirs}%: {ratios[0]:.2f}, "
            f"{ratios[1]:.2f} and {ratios[2]:.2f}x (median {sorted(ratios)[1]:.2f})") in readme
    earlier = re.search(r"took [\d.]+ s from start to exit and reached ([\d.]+%) held-out accuracy", readme).group(1)
    assert re.search(rf"earlier builds gave [^)]*\b{re.escape(earlier)}[^)]* with the same command", readme)


def test_the_degradation_pages_earlier_runs_are_their_committed_summaries():
    """results/degradation/README.md's table of the 2026-11-27 runs: the rows of seeds 1 and 2 are the
    train / test errors of their old-format summaries (quick-seed1.md, quick-seed2.md)."""
    folder = ROOT / "results/degradation"
    page = (folder / "README.md").read_text()
    for seed in (1, 2):
        rows = re.findall(r"^\| (plain20|plain56|resnet20|resnet56) \| [\d,]+ \| ([\d.]+) \| ([\d.]+) \|",
                          (folder / f"quick-seed{seed}.md").read_text(), re.M)
        assert [name for name, _, _ in rows] == ["plain20", "plain56", "resnet20", "resnet56"]
        assert f"| {seed} | " + " | ".join(f"{train} / {test}" for _, train, test in rows) + " |" in page


def test_the_degradation_noise_and_the_earlier_runs_spans_follow_from_the_pages_numbers():
    """degradation.NOISE's spans of ResNet-56 minus ResNet-20 ("-5.2 to +4.0 points over seeds 0-2 and three
    builds", "-10.3 to +4.3 (sd 7.3) on the 2026-12-03 machine") and the page's spans over the ten earlier runs,
    computed from the errors results/degradation/README.md gives for those runs."""
    page = one_line(ROOT / "results/degradation/README.md")
    earlier = page.split("## Earlier runs")[1]
    rows = [[float(v) for v in re.findall(r"([\d.]+) / [\d.]+", row)]
            for row in re.findall(r"\| \d \| ([^|]+\|[^|]+\|[^|]+\|[^|]+)\|", earlier)]   # train errors, 2026-11-27
    assert len(rows) == 3
    builds = re.search(r"gave ResNet-56 ([\d.]+) / ([\d.]+) / ([\d.]+)% against ResNet-20's ([\d.]+) / ([\d.]+) / "
                       r"([\d.]+)% \(plain-56 ([\d.]+) / ([\d.]+) / ([\d.]+)% against plain-20's ([\d.]+) / ([\d.]+) / "
                       r"([\d.]+)%\), and ([\d.]+) / ([\d.]+) / ([\d.]+)% against ([\d.]+) / ([\d.]+) / ([\d.]+)% "
                       r"\(plain-56 ([\d.]+) / ([\d.]+) / ([\d.]+)% against ([\d.]+) / ([\d.]+) / ([\d.]+)%\)", earlier)
    b = [float(v) for v in builds.groups()]
    resnet = [r[3] - r[2] for r in rows] + [b[i] - b[i + 3] for i in (0, 1, 2, 12, 13, 14)]
    plain = [r[1] - r[0] for r in rows] + [b[i] - b[i + 3] for i in (6, 7, 8, 18, 19, 20)]
    columns = page.split("## Before the row columns")[1].split("## Earlier runs")[0]
    matrix = re.findall(r"\| \d \| ([\d.]+) / [\d.]+ \| ([\d.]+) / [\d.]+ \| [\d.]+ / [\d.]+ \| [\d.]+ / [\d.]+ \| ([+-][\d.]+) \|", columns)
    gaps = [float(g) for _, _, g in matrix]
    assert len(gaps) == 3
    noise = " ".join(degradation.NOISE.split())
    quick = degradation.QUICK                                           # the settings those runs used
    assert f"from the quick settings (width {quick['width']}, {quick['iterations']:,} iterations)" in noise
    assert f"ranged from {min(resnet):+.1f} to {max(resnet):+.1f} points over seeds 0-2 and three builds" in noise
    assert (f"from {min(gaps):+.1f} to {max(gaps):+.1f} (sd {np.std(gaps, ddof=1):.1f}) on the 2026-12-03 machine"
            in noise)
    plain.append(float(matrix[0][1]) - float(matrix[0][0]))           # the column matrix's seed 0
    resnet.append(gaps[0])
    assert (f"plain-56 ends {min(plain):.0f}-{max(plain):.0f} points above plain-20; ResNet-56 ends between "
            f"{-min(resnet):.1f} points below and {max(resnet):.1f} points above ResNet-20") in earlier


@pytest.mark.parametrize("newer", [3, 4])
def test_a_time_to_accuracy_record_names_pytorchs_drift_from_the_record_before(newer):
    """"PyTorch's runs slower than in the record before (median 96.6 s against 89.1 s)", or faster: the
    medians of PyTorch's seconds in a record and the one before it, in the README and in the record."""
    def pytorch_median(record):
        rows = re.findall(r"^\| \d \| (.+) \|$", (ROOT / record).read_text(), re.M)
        return sorted(float(row.split(" | ")[2]) for row in rows)[1]
    now, before = pytorch_median(TIME_TO_ACCURACY[newer]), pytorch_median(TIME_TO_ACCURACY[newer - 1])
    word = "slower" if now > before else "faster"
    assert f"PyTorch's runs {word} than in the record before (median {now:.1f} s against {before:.1f} s)" in one_line(ROOT / "README.md")
    assert f"(median {now:.1f} s against {before:.1f} s)" in one_line(ROOT / TIME_TO_ACCURACY[newer])
