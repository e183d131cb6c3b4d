r"""The paper's claims judged over several seeds: the spread between seeds is the noise.

One run judges each claim against a stated tolerance (:func:`~minires.experiments.common.compare`).
Over ``n`` seeds of the same experiment the noise can be measured instead: for each compared pair
(e.g. ResNet-20 vs ResNet-56) the seeds give gaps :math:`g_1 \dots g_n` (positive when the paper's
inequality holds), with mean :math:`\bar g`, sample standard deviation :math:`s` and the 95%
confidence interval :math:`\bar g \pm t_{n-1} s / \sqrt{n}` (Student's t, two-sided). The pair's
verdict is *holds* when the whole interval is above 0, *does not hold* when it is below, and *cannot
tell* when it contains 0; a claim holds when every one of its pairs does. A seed whose run could not
read the claim (a net it rests on flagged dead, diverged or under-trained) is left out and named,
with its run's reason; fewer than two usable seeds cannot tell.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .common import FAILS, HOLDS, UNCLEAR, dataset_of, flatten, markdown_table, read_results

# Two-sided 95% quantiles of Student's t with 1..10 degrees of freedom.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
Z975 = 1.959963984540054    # the normal's


def t95(dof: int) -> float:
    """The two-sided 95% quantile of Student's t with ``dof`` degrees of freedom: the table, and beyond it
    the Cornish-Fisher expansion in 1/dof (within 1e-4 of the exact quantile from 11 on)."""
    if dof <= len(T95):
        return T95[dof - 1]
    z = Z975
    return (z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * dof ** 3))


AGREE = ("experiment", "mode", "data", "settings")   # what runs combined over seeds must share
MIN_RUNS = 2   # a spread between seeds needs two of them at least (--seeds, --combine)


def load_runs(folders) -> list[dict]:
    """``results.json`` of each run folder, checked to be one experiment in one mode, on one dataset, with
    the same settings and distinct seeds; runs that differ are refused naming each differing field
    (a setting by its key) with every run's value."""
    if len(folders) < MIN_RUNS:
        raise ValueError(f"a spread between seeds needs {MIN_RUNS} or more runs of distinct seeds, got {len(folders)}: "
                         "give --combine more run folders")
    runs = []
    for folder in folders:
        path = Path(folder) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: give run folders written by minires experiment")
        runs.append(read_results(path))
    fields = [flatten({"experiment": r.get("experiment"), "mode": r.get("mode"), "data": dataset_of(r),
                       "settings": r.get("settings")}) for r in runs]
    differ = []
    for key in dict.fromkeys(k for f in fields for k in f):
        where = {}      # each value (as JSON) -> the folders that have it
        for folder, f in zip(folders, fields):
            where.setdefault(json.dumps(f.get(key, "absent")), []).append(str(folder))
        if len(where) > 1:
            differ.append(f"{key} (" + "; ".join(f"{value} in {', '.join(names)}" for value, names in where.items()) + ")")
    if differ:
        raise ValueError(f"the runs differ in {' and '.join(differ)}: runs combined over seeds must agree in "
                         f"{', '.join(AGREE[:-1])} and {AGREE[-1]}")
    seeds = [r.get("seed") for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the runs repeat a seed ({seeds}): the spread needs distinct seeds")
    return runs


def combine(runs: list[dict]) -> dict:
    """The claims of ``runs`` (one experiment, distinct seeds) judged on their spread between seeds."""
    first = runs[0]
    claims = [combine_claim([r["claims"][k] for r in runs], [r.get("seed") for r in runs])
              for k in range(len(first["claims"]))]
    return {"experiment": first["experiment"], "mode": first.get("mode"), "data": first.get("data"),
            "seeds": [r.get("seed") for r in runs], "claims": claims}


def combine_claim(per_seed: list[dict], seeds: list) -> dict:
    """One claim over seeds: each of its pairs judged on the 95% interval of its mean gap."""
    usable = [(seed, c) for seed, c in zip(seeds, per_seed) if _readable(c)]
    why_left_out = {seed: c["why"] for seed, c in zip(seeds, per_seed) if not _readable(c)}
    pairs = []
    if usable:
        for k, first in enumerate(usable[0][1]["comparisons"]):
            gaps = [c["comparisons"][k]["gap"] for _, c in usable]
            pairs.append(judge_gaps(first["expected"], gaps))
    verdicts = [p["verdict"] for p in pairs]
    if len(usable) < 2 or not pairs:
        verdict = UNCLEAR
    elif FAILS in verdicts:
        verdict = FAILS
    elif all(v == HOLDS for v in verdicts):
        verdict = HOLDS
    else:
        verdict = UNCLEAR
    return {"claim": per_seed[0]["claim"], "verdict": verdict, "pairs": pairs,
            "seeds_used": [s for s, _ in usable], "seeds_left_out": list(why_left_out),
            "why_left_out": {str(seed): why for seed, why in why_left_out.items()}}


def _readable(claim: dict) -> bool:
    """Whether the run could read the claim (results written before ``judge`` stored it say so in ``why``)."""
    return claim.get("readable", "cannot be read" not in claim["why"])


def judge_gaps(expected: str, gaps: list[float]) -> dict:
    """``expected`` (``"a < b"``) over seeds: mean gap, sample std, 95% interval and the verdict."""
    gaps = np.asarray(gaps, dtype=float)
    n = len(gaps)
    mean = float(gaps.mean())
    if n < 2:       # no spread to judge by: std and interval are None (null in seeds.json, not NaN)
        return {"expected": expected, "gaps": gaps.tolist(), "mean": mean, "std": None, "low": None,
                "high": None, "verdict": UNCLEAR}
    std = float(gaps.std(ddof=1))
    half = t95(n - 1) * std / math.sqrt(n)
    if not math.isfinite(half):
        verdict = UNCLEAR
    elif mean - half > 0:
        verdict = HOLDS
    elif mean + half < 0:
        verdict = FAILS
    else:
        verdict = UNCLEAR
    return {"expected": expected, "gaps": gaps.tolist(), "mean": mean, "std": std, "low": mean - half,
            "high": mean + half, "verdict": verdict}


def report(combined: dict) -> str:
    """The claims over seeds as Markdown: one row per compared pair, then each claim's verdict."""
    rows = [{"claim": c["claim"], "pair": p["expected"], "gaps": ", ".join(f"{g:+.3g}" for g in p["gaps"]),
             "mean": f"{p['mean']:+.3g}", "std": "n/a: one seed" if p["std"] is None else f"{p['std']:.3g}",
             "interval": "n/a: one seed" if p["low"] is None else f"[{p['low']:+.3g}, {p['high']:+.3g}]",
             "verdict": p["verdict"]}
            for c in combined["claims"] for p in c["pairs"]]
    table = markdown_table(rows, [("claim", "paper's claim", "s"), ("pair", "pair", "s"),
                                  ("gaps", "gap per seed", "s"), ("mean", "mean gap", "s"),
                                  ("std", "std between seeds", "s"), ("interval", "95% interval", "s"),
                                  ("verdict", "pair's verdict", "s")])
    verdicts = "\n".join(f"- *{c['claim']}* — **{c['verdict']}** (seeds used: {_seeds(c['seeds_used'])}"
                         + "".join(f"; left out: seed {seed}, {why}" for seed, why in c["why_left_out"].items())
                         + ")" for c in combined["claims"])
    return (f"{combined['experiment']} ({combined['mode']} settings; {combined['data']}): the paper's claims over "
            f"seeds {_seeds(combined['seeds'])}\n\nA gap is positive when the paper's inequality holds. A pair holds "
            "when its whole 95% interval (Student's t over the seeds) is above 0, does not hold when it is below, and "
            f"cannot tell when it contains 0.\n\n{table}\n\n{verdicts}\n")


def _seeds(seeds) -> str:
    return ", ".join(map(str, seeds)) or "none"
