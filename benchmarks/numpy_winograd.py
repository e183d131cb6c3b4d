"""Why minires has no Winograd convolution: in NumPy its transforms cost more than the GEMM work they
save. A probe, not part of minires.

Winograd's F(2x2, 3x3) computes each 2x2 block of a 3x3, stride-1 convolution's output from the 4x4
input tile around it with 16 multiplications per (input channel, output channel) pair instead of 36:

    Y = A^T [ (G w G^T) * (B^T d B) ] A

where ``d`` is a 4x4 input tile, ``w`` a 3x3 kernel, ``*`` the elementwise product summed over input
channels, and B, G, A the small constant matrices below. Summed over channels, the 16 elementwise
products become 16 independent GEMMs, one per tile position (a, b):

    M[a, b] = V[a, b] @ U[a, b]        V: (tiles, C) transformed input,  U: (C, O) transformed weight

so the GEMM work is 16/36 of im2col's (2.25x less). What it costs instead: the input transform (B^T d
B, 32 strided adds per tile and channel), the output transform (A^T M A, 24 per tile and output channel)
and an intermediate M four times the size of the output (16 values per 2x2 output block and output
channel). This probe writes all three as whole-array NumPy operations on
channels-last memory (the layout of minires' CPU convs), runs the images in chunks of ``--per``, and
times it against minires' default CPU conv forward on ResNet-20's three 3x3 layer shapes, one thread::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/numpy_winograd.py --batch 32
"""
from __future__ import annotations

import argparse

import numpy as np
from threadpoolctl import threadpool_limits

import minires as mr
from minires import backend
from minires.bench.timing import median_seconds
from minires.cpu import threads

G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def weight_transform(w):
    """(O, C, 3, 3) kernels -> U, (16, C, O): U[4a + b] = (G w G^T)[a, b] for every (o, c)."""
    u = np.einsum("ap,ocpq,bq->abco", G, w, G)
    return np.ascontiguousarray(u.reshape(16, w.shape[1], w.shape[0])).astype(w.dtype)


def input_transform(x_padded, v):
    """B^T d B for every 4x4 tile (stride 2) of the zero-padded channels-last images, into v (4, 4, n,
    tiles_h, tiles_w, C): the rows' combination first, then the columns'."""
    n, height, width, channels = x_padded.shape
    tiles_h, tiles_w = (height - 2) // 2, (width - 2) // 2
    r = [x_padded[:, k:k + 2 * tiles_h:2] for k in range(4)]             # row k of every tile
    rows = np.empty((4, n, tiles_h, width, channels), x_padded.dtype)
    np.subtract(r[0], r[2], out=rows[0])
    np.add(r[1], r[2], out=rows[1])
    np.subtract(r[2], r[1], out=rows[2])
    np.subtract(r[1], r[3], out=rows[3])
    s = [rows[:, :, :, k:k + 2 * tiles_w:2] for k in range(4)]          # column k of every tile
    np.subtract(s[0], s[2], out=v[:, 0])
    np.add(s[1], s[2], out=v[:, 1])
    np.subtract(s[2], s[1], out=v[:, 2])
    np.subtract(s[1], s[3], out=v[:, 3])


def output_transform(m, y):
    """A^T M A for every tile: m (4, 4, n, tiles_h, tiles_w, O) -> the 2x2 output blocks of y (n, H, W, O)."""
    for i, t in enumerate((m[0] + m[1] + m[2], m[1] - m[2] - m[3])):   # output row i of every block
        y_row = y[:, i::2]
        np.add(t[0], t[1], out=y_row[:, :, 0::2])
        y_row[:, :, 0::2] += t[2]
        np.subtract(t[1], t[2], out=y_row[:, :, 1::2])
        y_row[:, :, 1::2] -= t[3]


def winograd_conv(x_last, w, per: int):
    """3x3 convolution, stride 1, padding 1, of channels-last images (n, H, W, C) with even H and W, by
    F(2x2, 3x3), ``per`` images at a time; returns channels-last (n, H, W, O)."""
    n, height, width, channels = x_last.shape
    if height % 2 or width % 2 or w.shape[2:] != (3, 3):
        raise ValueError(f"F(2x2, 3x3) here needs even sizes and 3x3 kernels, not {x_last.shape} and {w.shape}")
    u = weight_transform(w)
    y = np.empty((n, height, width, w.shape[0]), x_last.dtype)
    for start in range(0, n, per):
        images = x_last[start:start + per]
        x_padded = np.zeros((len(images), height + 2, width + 2, channels), x_last.dtype)
        x_padded[:, 1:-1, 1:-1] = images
        v = np.empty((4, 4, len(images), height // 2, width // 2, channels), x_last.dtype)
        input_transform(x_padded, v)
        m = np.matmul(v.reshape(16, -1, channels), u)                   # the 16 GEMMs, (16, tiles, O)
        output_transform(m.reshape(4, 4, len(images), height // 2, width // 2, -1), y[start:start + per])
    return y


def median_ms(f, repeat: int = 9) -> float:
    return 1e3 * median_seconds(f, synchronize=lambda: None, repeat=repeat, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--per", default="2,4,8,16", help="images per Winograd chunk, comma-separated")
    args = parser.parse_args()
    chunks = [int(p) for p in args.per.split(",")]
    name, conv = backend.lookup("conv2d", np.zeros(1, np.float32))
    threads.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"one thread, batch {args.batch}, float32, minires {mr.__version__} conv2d {name!r}, NumPy {np.__version__}")
    with threadpool_limits(1):
        for channels, size in ((16, 32), (32, 16), (64, 8)):
            x_last = rng.standard_normal((args.batch, size, size, channels), dtype=np.float32)
            x = x_last.transpose(0, 3, 1, 2)                                 # NCHW view of channels-last memory
            w = (0.1 * rng.standard_normal((channels, channels, 3, 3))).astype(np.float32)
            reference = conv.forward(x, w, (1, 1), (1, 1))
            line = f"{channels:2d} -> {channels:2d} @{size:2d}  minires {median_ms(lambda: conv.forward(x, w, (1, 1), (1, 1))):6.2f} ms"
            for per in chunks:
                y = winograd_conv(x_last, w, per).transpose(0, 3, 1, 2)
                assert np.allclose(y, reference, rtol=1e-4, atol=1e-4)
                line += f" | Winograd, {per:2d} images {median_ms(lambda: winograd_conv(x_last, w, per)):6.2f} ms"
            print(line, flush=True)


if __name__ == "__main__":
    main()
