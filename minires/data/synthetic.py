r"""The embedded dataset: procedural 32x32 RGB images in ten classes, no download needed.

Each image shows one object on a shaded background; the class is the object's *shape or texture*:

====  ============  =====================================================================
 0    disk          filled circle
 1    square        filled square, any rotation
 2    triangle      filled equilateral triangle, any rotation
 3    ring          circle outline
 4    frame         square outline, any rotation
 5    plus          ``+`` (rotated at most 15 degrees)
 6    cross         ``x`` (a plus turned 45 +- 15 degrees)
 7    stripes       a patch of parallel stripes, any orientation and phase
 8    checkerboard  a patch of checks, any orientation and phase
 9    dots          a patch of polka dots on a lattice, any orientation and phase
====  ============  =====================================================================

Everything else is a nuisance drawn at random per image: position, size and rotation; foreground
and background colours (brightness contrast between 0.35 and 0.65, either polarity, tinted); a
brightness ramp across the background; a few soft coloured blobs of clutter (some over the object);
and Gaussian pixel noise. The nuisances make raw pixels a poor feature: a linear classifier on them
stays far below a small conv net, whose translation-equivariant filters and global pooling fit the
task. Every class is closed under horizontal flips and small shifts, so the usual CIFAR
augmentation applies.

Generation is vectorised over the images of a class within chunks of 500 (a few seconds for 10^4
images) and depends only on ``(seed, train, n)``: ``Synthetic(train=True, seed=0)`` is the same on
every machine.
"""
from __future__ import annotations

import numpy as np

from ..checks import positive_int
from ..random import check_seed
from .datasets import ArrayDataset

CLASSES = ("disk", "square", "triangle", "ring", "frame", "plus", "cross", "stripes", "checkerboard", "dots")
SIZE = 32
DEFAULT_SIZES = {True: 10_000, False: 2_000}
CHUNK = 500


class Synthetic(ArrayDataset):
    """Procedural shapes and textures: ``n`` images of 3x32x32 in ten balanced classes.

    ``train`` and ``seed`` pick independent random streams, so the held-out split never repeats a
    training image. ``n`` defaults to 10,000 (train) or 2,000 (test).
    """

    classes = CLASSES

    def __init__(self, train: bool = True, n: int | None = None, seed: int = 0):
        n = DEFAULT_SIZES[bool(train)] if n is None else n
        if not positive_int.holds(n):
            raise ValueError(f"Synthetic: n must be a positive integer (a number of images), got {n!r}")
        seed = check_seed(seed)
        chunks = [_render_chunk(seed, 0 if train else 1, k, min(CHUNK, n - start))
                  for k, start in enumerate(range(0, n, CHUNK))]
        super().__init__(np.concatenate([images for images, _ in chunks]),
                         np.concatenate([labels for _, labels in chunks]))
        self.train, self.seed = bool(train), seed


# ----------------------------------------------------------------------------- rendering
def _render_chunk(seed: int, split: int, index: int, n: int):
    """Images and labels of chunk ``index``: a block of up to CHUNK images with its own random stream.

    Chunks keep the working arrays in the CPU caches (a few MB each), which made generation faster
    than one pass over all images (about 3x in a one-off timing of 2026-11-27, not committed); a full
    chunk is the same whatever ``n`` is.
    """
    rng = np.random.default_rng([seed, split, index])
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    return render(labels, rng), labels


def render(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Images (N, 3, 32, 32) uint8 for the given class labels, all randomness drawn from ``rng``."""
    n = len(labels)
    scene = _draw_scene_parameters(n, rng)
    coverage = np.empty((n, SIZE, SIZE), np.float32)
    for label, draw in enumerate(_SHAPES):
        members = np.flatnonzero(labels == label)
        if members.size:
            coverage[members] = draw(_local_coordinates(scene, members), {k: v[members] for k, v in scene.items()})
    image = _background(scene)
    _blend(image, scene["fg"], coverage)
    _add_clutter(image, n, rng)
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    noise *= scene["noise"][:, None, None, None].astype(np.float32)
    image += noise
    np.clip(image, 0, 1, out=image)
    return np.rint(image * 255).astype(np.uint8)


def _blend(image, colour, alpha):
    """Paint ``colour`` (N, 3) with opacity ``alpha`` (N, H, W) over ``image`` (N, 3, H, W), in place."""
    image += alpha[:, None] * (colour[:, :, None, None] - image)


def _draw_scene_parameters(n, rng):
    """Per-image nuisance parameters, drawn in a fixed order so a seed fixes every image."""
    bg_brightness = rng.uniform(0, 1, n)
    fg_brightness = (bg_brightness + rng.uniform(0.35, 0.65, n)) % 1.0
    return {
        "cx": rng.uniform(0.3, 0.7, n) * SIZE, "cy": rng.uniform(0.3, 0.7, n) * SIZE,
        "radius": rng.uniform(7, 12, n),
        "angle": rng.uniform(0, 2 * np.pi, n),
        "tilt": rng.uniform(-np.pi / 12, np.pi / 12, n),  # plus/cross: small rotation only
        "period": rng.uniform(4, 6.5, n),                 # texture period in pixels
        "phase": rng.uniform(0, 1, (n, 2)),
        "round_patch": rng.uniform(0, 1, n) < 0.5,        # texture patch outline: disk or square
        "bg": _tint(bg_brightness, rng), "fg": _tint(fg_brightness, rng),
        "ramp": rng.normal(size=(n, 2)) * 0.004,          # background brightness slope per pixel
        "noise": rng.uniform(0.01, 0.05, n),
    }


def _tint(brightness, rng):
    """RGB colours (N, 3) of the given brightness, each channel shifted a little at random."""
    return np.clip(brightness[:, None] + rng.uniform(-0.2, 0.2, (len(brightness), 3)), 0, 1)


def _local_coordinates(scene, members):
    """Pixel-centre coordinates (u, v) in each object's frame: origin at its centre, rotated by its angle."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    dx = x[None] - scene["cx"][members, None, None]
    dy = y[None] - scene["cy"][members, None, None]
    cos, sin = (f(scene["angle"][members])[:, None, None] for f in (np.cos, np.sin))
    return cos * dx + sin * dy, -sin * dx + cos * dy


def _background(scene):
    """Background colour plus a linear brightness ramp: (N, 3, H, W) float32."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] - SIZE / 2
    ramp = scene["ramp"][:, 0, None, None] * x + scene["ramp"][:, 1, None, None] * y
    return (scene["bg"][:, :, None, None] + ramp[:, None]).astype(np.float32)


def _add_clutter(image, n, rng, max_blobs=3):
    """Blend 1..max_blobs soft blobs of random colour, size and position into each image, in place."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    for k in range(max_blobs):
        present = (rng.uniform(0, 1, n) < 0.5) if k else np.ones(n, bool)
        cx, cy = rng.uniform(0, SIZE, (2, n))
        width = rng.uniform(0.7, 1.5, n)
        colour = rng.uniform(0, 1, (n, 3))
        d2 = (x[None] - cx[:, None, None]) ** 2 + (y[None] - cy[:, None, None]) ** 2
        alpha = (present * 0.8)[:, None, None] * np.exp(-d2 / (2 * width[:, None, None] ** 2))
        _blend(image, colour, alpha.astype(np.float32))


# ----------------------------------------------------------------------------- the ten classes
# Each takes local coordinates (u, v) of shape (N, H, W) and the members' scene parameters, and
# returns coverage in [0, 1]. Shapes are written as signed distances (negative inside), so
# `_fill` gives one pixel of anti-aliasing at every edge.
def _fill(signed_distance):
    return np.clip(0.5 - signed_distance, 0, 1)


def _r(p):
    return p["radius"][:, None, None]


def _outline_width(p):
    return np.maximum(1.2, 0.18 * _r(p))


def _box(u, v):
    return np.maximum(np.abs(u), np.abs(v))


def _disk(uv, p):
    return _fill(np.hypot(*uv) - _r(p))


def _square(uv, p):
    return _fill(_box(*uv) - 0.8 * _r(p))


def _triangle(uv, p):
    u, v = uv
    edges = [np.cos(a) * u + np.sin(a) * v for a in np.pi / 2 + 2 * np.pi / 3 * np.arange(3)]
    return _fill(np.max(edges, axis=0) - 0.5 * _r(p))  # inradius r/2: circumradius r


def _ring(uv, p):
    t = _outline_width(p)
    return _fill(np.abs(np.hypot(*uv) - (_r(p) - t)) - t)


def _frame(uv, p):
    t = _outline_width(p)
    return _fill(np.abs(_box(*uv) - (0.8 * _r(p) - t)) - t)


def _bars(uv, p, turn):
    """A plus turned by ``turn`` plus the image's small tilt (its random angle is ignored)."""
    u, v = uv
    angle = turn + p["tilt"][:, None, None] - p["angle"][:, None, None]  # undo the frame's rotation
    u, v = np.cos(angle) * u + np.sin(angle) * v, -np.sin(angle) * u + np.cos(angle) * v
    arm, half_width = _r(p), np.maximum(1.2, 0.22 * _r(p))
    horizontal = np.maximum(np.abs(u) - arm, np.abs(v) - half_width)
    vertical = np.maximum(np.abs(v) - arm, np.abs(u) - half_width)
    return _fill(np.minimum(horizontal, vertical))


def _plus(uv, p):
    return _bars(uv, p, 0.0)


def _cross(uv, p):
    return _bars(uv, p, np.pi / 4)


def _patch(uv, p):
    """The region a texture fills: a disk or a square, a little larger than the shapes."""
    reach = _r(p) + 2
    round_patch = p["round_patch"][:, None, None]
    return _fill(np.where(round_patch, np.hypot(*uv), _box(*uv)) - reach)


def _wave(w, p, axis):
    """sin of 2 pi (w / period + phase): the texture's oscillation along one local axis."""
    return np.sin(2 * np.pi * (w / p["period"][:, None, None] + p["phase"][:, axis, None, None]))


def _soft_step(s):
    """Map a smooth signal to 0/1 with a narrow anti-aliased transition."""
    return np.clip(0.5 + 2.0 * s, 0, 1)


def _stripes(uv, p):
    return _patch(uv, p) * _soft_step(_wave(uv[0], p, 0))


def _checkerboard(uv, p):
    return _patch(uv, p) * _soft_step(_wave(uv[0], p, 0) * _wave(uv[1], p, 1))


def _dots(uv, p):
    period = p["period"][:, None, None]
    offsets = [(w / period + p["phase"][:, axis, None, None]) % 1.0 - 0.5 for axis, w in enumerate(uv)]
    return _patch(uv, p) * _fill(np.hypot(*offsets) * period - 0.3 * period)


_SHAPES = (_disk, _square, _triangle, _ring, _frame, _plus, _cross, _stripes, _checkerboard, _dots)
