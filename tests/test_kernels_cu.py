"""Every CUDA C kernel file compiles with nvcc, for both dtypes minires builds, without warnings,
and defines exactly the kernels listed here (the ones ``minires.gpu.cupy_kernels`` launches).
Skips when nvcc is absent.

(On a GPU, tests/test_gpu.py compiles the same files with NVRTC through CuPy and runs them.)
"""
import re
import shutil
import subprocess

import pytest

from minires.kernels import CUDA_SOURCES, source_path

KERNELS = {
    "conv2d.cu": {"im2col", "col2im", "conv2d_forward_tiled", "conv2d_backward_data_tiled",
                  "conv2d_backward_weight_tiled"},
    "batchnorm.cu": {"batch_norm_forward_train", "batch_norm_backward"},
    "elementwise.cu": {"relu_forward", "relu_backward", "add_relu_forward"},
}
NVCC = shutil.which("nvcc")


def test_every_kernel_file_is_listed():
    assert set(KERNELS) == set(CUDA_SOURCES)


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed")
@pytest.mark.parametrize("real", ["float", "double"])
@pytest.mark.parametrize("source", sorted(KERNELS))
def test_cuda_source_compiles_to_ptx_with_every_kernel(source, real, tmp_path):
    ptx = tmp_path / "out.ptx"
    result = subprocess.run([NVCC, "-arch=sm_80", "--ptx", "-Werror", "all-warnings", f"-DMINIRES_REAL={real}",
                             "-o", str(ptx), str(source_path(source))], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert set(re.findall(r"\.entry (\w+)\(", ptx.read_text())) == KERNELS[source]

