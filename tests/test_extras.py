"""setup.cfg's extras keep the promises of the README's "Installing" section: the test command's
extra is small, and ``dev`` is every other extra but CuPy and JupyterLab (so CI, which installs
``dev``, runs every test a CPU-only machine can)."""
import configparser
import re
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def extras():
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    section = config["options.extras_require"]
    return {name: {re.split(r"[<>=!~ \[]", line.strip())[0].lower()
                   for line in section[name].splitlines() if line.strip()} for name in section}


def test_the_test_extra_is_only_the_test_runner_and_hypothesis():
    assert extras()["test"] == {"pytest", "hypothesis"}


def test_dev_is_every_other_extra_but_cupy_and_jupyterlab():
    groups = extras()
    others = set().union(*(packages for name, packages in groups.items() if name != "dev"))
    assert groups["dev"] == others - {"cupy-cuda12x", "jupyterlab"}


def readme_section(title):
    text = (SETUP_CFG.parent / "README.md").read_text()
    return " ".join(text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0].split())


def test_the_readmes_table_names_each_extras_packages_and_the_install_its_own():
    """Each row of the README's table of extras lists exactly the packages that setup.cfg's extra adds
    (``dev`` is checked above), and the first sentence names ``install_requires``."""
    installing = readme_section("Installing")
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    required = {re.split(r"[<>=!~ \[]", line.strip())[0].lower()
                for line in config["options"]["install_requires"].splitlines() if line.strip()}
    named = re.search(r"`pip install -e \.` installs minires with what it runs on: (.*?)\. ", installing).group(1)
    assert set(re.split(r", | and ", re.sub(r" \(.*?\)", "", named).lower())) == required, named
    for name, packages in extras().items():
        if name == "dev":
            continue
        row = re.search(rf"\| `{name}` \| ([^|]*) \|", installing)
        assert row, f"the README's table has no row for the extra {name}"
        listed = {p.strip().lower() for p in row.group(1).split(",")}
        assert {"cupy" if p.startswith("cupy") else p for p in packages} == listed, (name, listed)


def test_the_numba_rows_timings_are_the_performance_sections():
    """The numba extra's row quotes the A/B step ratios that "Performance (CPU)" reports for its kernels."""
    row = re.search(r"\| `numba` \| Numba, TBB \| ([^|]*) \|", readme_section("Installing")).group(1)
    performance = readme_section("Performance (CPU)")
    batch_norm = re.search(r"ResNet-20 step at batch 128 \(.*?; step (\d\.\d+-\d\.\d+)x\)", performance).group(1)
    relu = re.search(r"\(0\.\d+-0\.\d+x; the step (\d\.\d+-\d\.\d+)x\)", performance).group(1)
    assert f"step took {batch_norm}x the time with NumPy's batch norm at batch 128" in row
    assert f"{relu}x with NumPy's ReLU backward" in row
    from conftest import REPO
    numba_rows = [float(r) for r in re.findall(r"B / A: step ([\d.]+)", (REPO / NUMBA_ROWS_AB).read_text())]
    assert f"and {min(numba_rows):.3f}-{max(numba_rows):.3f}x with `numba-rows` instead of `numpy-fast`" in row


INSTALL_REPORT = "results/install/2026-12-04-amd-epyc.md"
NUMBA_ROWS_AB = "results/cpu/2026-12-04-amd-epyc-numba-rows-ab.txt"


def test_the_readmes_install_sizes_are_the_committed_outputs():
    """The table of venv sizes and install times is the committed output of benchmarks/install_sizes.sh, row
    for row, and the sentence on what fills minires' own environment quotes its list of largest folders."""
    from conftest import REPO, one_line
    report = (REPO / INSTALL_REPORT).read_text()
    readme = (REPO / "README.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("|")]
    assert len(rows) == 11 and "\n".join(rows) in readme
    assert f"[output]({INSTALL_REPORT})" in readme
    largest = dict(re.findall(r"(\S+) (\d+) MiB", report.split("Largest folders")[1]))
    size = {name: int(largest[name]) for name in ("numpy", "numpy.libs", "matplotlib", "fontTools", "PIL",
                                                  "pillow.libs", "pip", "setuptools")}
    whole = re.search(r'`pip install -e "\."` \| (\d+) MiB', report).group(1)
    assert (f"In the {whole} MiB of `.`, NumPy takes {size['numpy'] + size['numpy.libs']} MiB (`numpy` {size['numpy']}, "
            f"`numpy.libs` {size['numpy.libs']}), Matplotlib {size['matplotlib']} MiB and its largest dependencies "
            f"fontTools {size['fontTools']} and Pillow {size['PIL'] + size['pillow.libs']} (`pillow.libs` "
            f"{size['pillow.libs']}, `PIL` {size['PIL']}), pip and setuptools {size['pip'] + size['setuptools']} "
            f"({size['pip']} and {size['setuptools']})") in one_line("README.md")


def test_what_tbb_added_is_the_difference_from_the_run_before_it():
    """The README's "pip's tbb added N MiB" is the committed sizes minus those of the run of 20:27 UTC
    (numba 407 MiB, dev 766 MiB, the file's earlier version in git)."""
    from conftest import REPO, one_line
    report = (REPO / INSTALL_REPORT).read_text()
    numba, dev = (int(re.search(rf'`pip install -e "\.\[{extra}\]"` \| (\d+) MiB', report).group(1))
                  for extra in ("numba", "dev"))
    assert (f"added {numba - 407} MiB to the `numba` extra (407 MiB at 20:27 UTC the same day, without it) "
            f"and {dev - 766} MiB to `dev`") in one_line("README.md")
