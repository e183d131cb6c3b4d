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
