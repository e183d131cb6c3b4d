"""``minires bench cpu``'s BLAS report (minires.bench.blas): the description of the loaded BLAS and
the OpenBLAS override check, on planted inputs (no timing asserts)."""
import pytest

from minires.bench import blas

OPENBLAS = {"user_api": "blas", "internal_api": "openblas", "num_threads": 1, "version": "0.3.31",
            "architecture": "Haswell", "filepath": "/site-packages/numpy.libs/libscipy_openblas64_.so"}
MKL = {"user_api": "blas", "internal_api": "mkl", "num_threads": 4, "version": "2024.2",
       "threading_layer": "intel", "filepath": "/lib/libmkl_rt.so.2"}


def test_describe_names_library_version_core_type_threads_and_file():
    assert blas.describe([OPENBLAS], "scipy-openblas 0.3.31") == \
        "OpenBLAS 0.3.31, core type Haswell, 1 thread (libscipy_openblas64_.so)"
    assert blas.describe([OPENBLAS, MKL], "?").split("; ")[1] == \
        "MKL 2024.2, core type not reported, 4 threads (libmkl_rt.so.2)"


def test_describe_without_threadpoolctl_says_so_and_keeps_the_build_record():
    line = blas.describe(None, "scipy-openblas 0.3.31")
    assert line.startswith("scipy-openblas 0.3.31 (threadpoolctl is not installed")
    assert "pip install threadpoolctl" in line
    assert "no BLAS library loaded" in blas.describe([], "accelerate")


def test_the_report_describes_the_blas_this_process_loaded():
    libraries = blas.loaded_libraries()
    if libraries is None:
        pytest.skip("threadpoolctl is not installed")
    import threadpoolctl
    line = blas.describe(libraries, blas.numpy_build_blas())
    for lib in threadpoolctl.threadpool_info():
        if lib["user_api"] == "blas":
            assert lib["version"] in line and f"{lib['num_threads']} thread" in line


def test_overrides_are_found_only_when_set_and_not_empty():
    assert blas.overrides_in({"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "", "PATH": "/bin"}) == \
        {"OPENBLAS_CORETYPE": "Haswell"}
    assert blas.overrides_in({"OMP_NUM_THREADS": "2"}) == {}


@pytest.mark.parametrize("with_ms, own_ms, expected", [
    (120.0, 100.0, "WARNING: OPENBLAS_CORETYPE=Haswell makes minires SLOWER than OpenBLAS's own choice"),
    (80.0, 100.0, "OPENBLAS_CORETYPE=Haswell makes minires faster than OpenBLAS's own choice"),
    (102.0, 100.0, "OPENBLAS_CORETYPE=Haswell makes no measurable difference (within 5%)"),
])
def test_verdict_says_which_is_faster_with_the_numbers(with_ms, own_ms, expected):
    line = blas.verdict({"OPENBLAS_CORETYPE": "Haswell"}, {"seconds": with_ms / 1e3, "core_type": "Haswell"},
                        {"seconds": own_ms / 1e3, "core_type": "SkylakeX"})
    assert line.startswith(expected)
    assert f"{with_ms:.1f} ms with OPENBLAS_CORETYPE=Haswell (core type Haswell)" in line
    assert f"{own_ms:.1f} ms with OpenBLAS's own choice (core type SkylakeX): {with_ms / own_ms:.2f}x" in line
    assert ("env -u OPENBLAS_CORETYPE" in line) == (with_ms > own_ms * 1.05)


def test_without_overrides_nothing_is_timed(monkeypatch):
    monkeypatch.setattr(blas, "time_conv_path", lambda *args: pytest.fail("timed without an override"))
    assert blas.override_lines(1, environ={"PATH": "/bin"}) == [
        "- OpenBLAS overrides: none set (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE unset): OpenBLAS picks its own kernels"]


def test_an_override_is_timed_with_and_without_it_alternately(monkeypatch):
    """The planted timer is slower when OPENBLAS_CORETYPE reaches it: the warning appears, with medians."""
    calls = []

    def planted(environ, threads, batch, repeat):
        calls.append("OPENBLAS_CORETYPE" in environ)
        slow = "OPENBLAS_CORETYPE" in environ
        return {"seconds": (0.150 if slow else 0.100) + 0.001 * len(calls), "core_type": "Haswell" if slow else "Zen",
                "convs": 19}

    monkeypatch.setattr(blas, "time_conv_path", planted)
    environ = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512", "PATH": "/bin"}
    [line] = blas.override_lines(2, batch=8, repeat=1, pairs=3, environ=environ, libraries=[OPENBLAS])
    assert calls == [True, False] * 3
    assert "WARNING: OPENBLAS_CORETYPE=Haswell, OPENBLAS_L2_SIZE=512 makes minires SLOWER" in line
    assert "153.0 ms with" in line and "104.0 ms with OpenBLAS's own choice (core type Zen)" in line  # medians
    assert "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE" in line and "batch 8, 2 threads" in line
    assert "wall clock" in line        # the children time with the default clock, whatever --clock the bench has


def test_an_override_without_openblas_is_reported_as_ignored(monkeypatch):
    monkeypatch.setattr(blas, "time_conv_path", lambda *args: pytest.fail("timed although OpenBLAS is absent"))
    [line] = blas.override_lines(1, environ={"OPENBLAS_CORETYPE": "Haswell"}, libraries=[MKL])
    assert "OPENBLAS_CORETYPE=Haswell is set, but NumPy's BLAS is not OpenBLAS: it has no effect" in line


def test_a_failed_child_is_reported_not_raised(monkeypatch):
    def failing(*args):
        raise RuntimeError("the OpenBLAS override check's child process failed:\nMemoryError")

    monkeypatch.setattr(blas, "time_conv_path", failing)
    [line] = blas.override_lines(1, environ={"OPENBLAS_L2_SIZE": "512"}, libraries=[OPENBLAS])
    assert line.startswith("- OpenBLAS overrides: OPENBLAS_L2_SIZE=512 is set, but timing with and without it failed")
    assert line.endswith("MemoryError")


def test_the_child_process_runs_with_the_environment_it_is_given():
    """Each side of the check really loads OpenBLAS with (or without) the override: the child reports
    the core type OpenBLAS chose, and OPENBLAS_CORETYPE=Haswell is one every x86-64 build knows."""
    libraries = blas.loaded_libraries()
    if not libraries or libraries[0]["internal_api"] != "openblas" or not libraries[0].get("architecture"):
        pytest.skip("NumPy's BLAS here is not an OpenBLAS that reports its core type")
    import os
    import platform
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("Haswell is an x86-64 core type")
    run = blas.time_conv_path(dict(os.environ, OPENBLAS_CORETYPE="Haswell"), threads=1, batch=1, repeat=1)
    assert run["core_type"] == "Haswell" and run["seconds"] > 0 and run["convs"] == 19


def test_a_child_that_fails_raises_with_its_error():
    import os
    with pytest.raises(RuntimeError, match="child process failed:(.|\n)*need at least one thread"):
        blas.time_conv_path(dict(os.environ), threads=0, batch=1, repeat=1)
