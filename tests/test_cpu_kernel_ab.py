"""benchmarks/cpu_kernel_ab.py's command line: a setting it cannot compare is refused in one argparse
line, never run into a traceback or a report of NaN (the timing itself: tests/test_cpu_batchnorm.py)."""
import pytest
from conftest import load_benchmark


@pytest.mark.parametrize("argv, message", [
    (["--rounds", "0"], "is not a positive integer"),                  # was: every median NaN, printed
    (["--threads", "0"], "is not a positive integer"),
    (["--op", "conv3d"], "--op: 'conv3d' is not a registry op; choose from add, add_relu, batch_norm, conv2d"),
    (["--impls", "numpy", "numpy"], "--impls: A and B are both 'numpy'; name two different implementations"),
    (["--impls", "numpy", "cupy"], "--impls: 'cupy' is not a CPU implementation of batch_norm; choose from numpy"),
])
def test_settings_it_cannot_compare_are_refused(argv, message, capsys):
    module = load_benchmark("cpu_kernel_ab")
    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err, err
