"""A stand-in for the ONNX model zoo's ``squeezenet1.1.onnx``, built offline with seeded weights.

The real file (https://github.com/onnx/models, ``squeezenet1.1-7.onnx``) is a Gluon export: opset 7,
IR version 3, input ``data`` float32 ``[1, 3, 224, 224]``, output ``squeezenet0_flatten0_reshape0``
float32 ``[1, 1000]`` of raw class scores, and every weight listed both as an initializer and as a graph
input. :func:`build_squeezenet11` writes a file with the same layout, architecture, node and tensor names,
so the archive builder, the MMS handler and MXNet's ONNX importer see what they would see with the real
one. The weights are random (He-normal, seeded), except the classifier (``conv10``), which is calibrated
with a small numpy forward pass so that, like a trained net, the scores are well separated and the top-1
class depends on the image (a plain random net predicts the same class for every input). The file says
it is a test model in its own metadata (``producer_name`` and the ``TEST_ONLY_KEY`` property).

The file's bytes depend on the seed only, not on the machine: the README's outputs and the tests'
expectations, measured on one CPU, hold on every x86-64. Generation therefore uses integer draws, exact
integer sums (BLAS gets them right in any order while they stay below 2**53, which is checked) and
single correctly rounded IEEE operations, never LAPACK or libm's transcendental functions, whose last
bits differ between CPUs (see "How the weights are made" below). ``tests/test_test_model.py`` pins the
SHA-256 and builds the file under several OpenBLAS kernels.

:func:`reference_probabilities` runs a model with onnxruntime and returns softmax probabilities, the
ground truth to compare the MXNet-served results with. This is a plain module, not a test file.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

_LOG = logging.getLogger(__name__)

INPUT_NAME = "data"
OUTPUT_NAME = "squeezenet0_flatten0_reshape0"
INPUT_SHAPE = (1, 3, 224, 224)
OPSET = 7
IR_VERSION = 3
PREFIX = "squeezenet0_"

# How a file made here says, inside itself, that it is a test model (the archive builder can look).
PRODUCER_NAME = "squeezenet_onnx (TEST-ONLY random weights)"
TEST_ONLY_KEY = "squeezenet_mar.test_only"
TEST_ONLY_VALUE = "random weights (seed {seed}), not the trained SqueezeNet: its classes mean nothing"

ZOO_MEAN = (0.485, 0.456, 0.406)
ZOO_STD = (0.229, 0.224, 0.225)
IMAGENET_MEAN = np.array(ZOO_MEAN, dtype=np.float32)
IMAGENET_STD = np.array(ZOO_STD, dtype=np.float32)

# (squeeze, expand1x1, expand3x3) of fire2 .. fire9; a 3x3/2 max pool precedes fire2, fire4 and fire6.
FIRE_CONFIG: tuple[tuple[int, int, int], ...] = (
    (16, 64, 64),
    (16, 64, 64),
    (32, 128, 128),
    (32, 128, 128),
    (48, 192, 192),
    (48, 192, 192),
    (64, 256, 256),
    (64, 256, 256),
)
POOL_BEFORE_FIRE = (0, 2, 4)

# How the weights are made. Every step whose result decides the file's bytes is exact or a single
# correctly rounded IEEE operation (+ - * / sqrt, rint, floor), so the file is the same on every x86-64
# whichever BLAS kernel, libm variant or SIMD width numpy picks there (see "Exact arithmetic" below):
# random numbers come from integer draws only (no Box-Muller, no libm log/exp/sin/cos/pow), and the
# calibration forward pass multiplies integers whose sums BLAS gets exactly right in any order.
_UNIFORM_BITS = 12  # an Irwin-Hall term is uniform on 0 .. 2**12 - 1 ...
_IRWIN_HALL_TERMS = 12  # ... and the centred sum of 12 has standard deviation sqrt(2**24 - 1) ~ 2**12
_WEIGHT_BITS = 16  # conv0 .. conv24 weights and biases are whole multiples of 2**-16
_ACTIVATION_BITS = 16  # calibration activations are floored to multiples of 2**-16 after each layer
_CLASSIFIER_BITS = 20  # conv10's weights are integers below 2**20 times a power of two of their own
_EXACT = 2**53  # float64 holds every integer up to this one exactly
_ACTIVATION_SCALE = math.ldexp(1.0, _ACTIVATION_BITS)  # ldexp, not **: libm's pow is avoided throughout
_WEIGHT_UNIT = math.ldexp(1.0, -_WEIGHT_BITS)

# Classifier calibration (see _calibrate_classifier): number of synthetic images; how far the spread of
# their pooled features is equalised, in eighths (8 = whitened, 0 = left as is); standard deviation of
# the class scores over the calibration images; common score offset, in units of that deviation. Tuned
# so that on smooth natural-looking images the softmax top-1 probability is mostly 0.2-0.95 with
# distinct top-5 probabilities, and that different images get different top-1 classes.
_CALIBRATION_IMAGES = 24
_IMAGES_PER_PASS = 4
_WHITEN_EIGHTHS = 6
_SCORE_STD = 5.0
_SCORE_OFFSET = 10.0


# --------------------------------------------------------------------------------------------------
# Test images (floating point: inputs for tests and benchmarks, not used to make the model)
# --------------------------------------------------------------------------------------------------


def normalize(images: np.ndarray) -> np.ndarray:
    """Map NCHW RGB images in [0, 1] to the normalised float32 input of the network."""
    images = np.asarray(images, dtype=np.float32)
    return (images - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]


def _upsample(low: np.ndarray, size: int = 224) -> np.ndarray:
    """Bilinearly resize CHW ``low`` (small, e.g. 3x7x7) to ``size`` x ``size``."""
    _, height, width = low.shape
    ys = np.linspace(0.0, height - 1.0, size)
    xs = np.linspace(0.0, width - 1.0, size)
    y0 = np.minimum(ys.astype(int), height - 2)
    x0 = np.minimum(xs.astype(int), width - 2)
    wy = (ys - y0)[None, :, None]
    wx = (xs - x0)[None, None, :]
    top = low[:, y0][:, :, x0] * (1 - wx) + low[:, y0][:, :, x0 + 1] * wx
    bottom = low[:, y0 + 1][:, :, x0] * (1 - wx) + low[:, y0 + 1][:, :, x0 + 1] * wx
    return top * (1 - wy) + bottom * wy


def smooth_images(count: int, seed: int = 0, size: int = 224) -> np.ndarray:
    """``count`` natural-looking (smooth random colour fields plus mild noise) normalised NCHW images."""
    rng = np.random.RandomState(seed)
    return np.stack([normalize(_smooth(rng, size)) for _ in range(count)])


def _smooth(rng: np.random.RandomState, size: int) -> np.ndarray:
    grid = int(rng.choice([3, 5, 8, 12]))
    image = _upsample(rng.uniform(0.0, 1.0, (3, grid, grid)), size) + rng.normal(0.0, 0.03, (3, size, size))
    return np.clip(image, 0.0, 1.0)


def pattern_images(seed: int = 0, size: int = 224) -> np.ndarray:
    """20 varied normalised NCHW test images: solid colours, gradients, noise, checkerboards, smooth."""
    rng = np.random.RandomState(seed)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(ramp, ramp, indexing="ij")
    images: list[np.ndarray] = []
    for colour in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (0, 0, 0), (0.5, 0.5, 0.5)):
        images.append(np.broadcast_to(np.array(colour, np.float32)[:, None, None], (3, size, size)))
    images.append(np.stack([xx, yy, 1 - xx]))
    images.append(np.stack([yy, yy, yy]))
    images.append(np.stack([1 - yy, xx * yy, xx]))
    images.append(np.stack([np.sin(6 * xx) ** 2, np.cos(9 * yy) ** 2, 0.5 + 0 * xx]))
    images.append(rng.uniform(0, 1, (3, size, size)))
    images.append(np.repeat(rng.uniform(0, 1, (1, size, size)), 3, axis=0))
    images.append(np.clip(0.5 + 0.15 * rng.normal(size=(3, size, size)), 0, 1))
    for cell, (a, b) in (
        (8, ((0, 0, 0), (1, 1, 1))),
        (28, ((1, 0, 0), (0, 0, 1))),
        (56, ((0, 1, 0), (1, 1, 0))),
    ):
        mask = ((np.arange(size)[:, None] // cell + np.arange(size)[None, :] // cell) % 2).astype(np.float32)
        colour_a = np.array(a, np.float32)[:, None, None]
        colour_b = np.array(b, np.float32)[:, None, None]
        images.append(colour_a * mask + colour_b * (1 - mask))
    images.append(
        np.stack([(xx > 0.5) * 1.0, (yy > 0.5) * 1.0, ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1) * 1.0])
    )
    batch = normalize(np.stack(images).astype(np.float32))
    return np.concatenate([batch, smooth_images(20 - len(images), seed + 1000, size)])


# --------------------------------------------------------------------------------------------------
# Calibration images: 8-bit pixels made with integer draws and integer arithmetic only
# --------------------------------------------------------------------------------------------------


def calibration_pixels(count: int, seed: int, size: int = 224) -> np.ndarray:
    """``count`` uint8 NCHW images of random kinds: smooth field, solid colour, gradient, noise,
    checkerboard. Integer draws and integer arithmetic only, so the same pixels on every machine."""
    rng = np.random.RandomState(seed)
    return np.stack([_integer_pattern(rng, size) for _ in range(count)]).astype(np.uint8)


def _integer_pattern(rng: np.random.RandomState, size: int) -> np.ndarray:
    """One CHW int64 image with values 0..255 (see :func:`calibration_pixels`)."""
    kind = int(rng.randint(5))
    colours = rng.randint(0, 256, (2, 3, 1, 1), dtype=np.int64)
    if kind == 0:  # smooth colour field, bilinear from a coarse grid, plus mild noise (std ~7.5)
        grid = int(rng.choice([3, 5, 8, 12]))
        noise = rng.randint(-7, 8, (3, 3, size, size), dtype=np.int64).sum(axis=0)
        return np.clip(
            _integer_upsample(rng.randint(0, 256, (3, grid, grid), dtype=np.int64), size) + noise, 0, 255
        )
    if kind == 1:  # solid colour
        return np.broadcast_to(colours[0], (3, size, size)).copy()
    if kind == 2:  # linear gradient between two colours in a random direction
        dx, dy = (int(v) for v in rng.randint(-8, 9, 2))
        ramp = np.arange(size, dtype=np.int64)
        along = (dx or 1) * ramp[None, :] + dy * ramp[:, None]
        along -= along.min()
        return (colours[0] * (along.max() - along) + colours[1] * along) // along.max()
    if kind == 3:  # uniform noise, coarse-grained, sometimes grey
        grain = int(rng.choice([1, 2, 4]))
        noise = rng.randint(0, 256, (3, size // grain, size // grain), dtype=np.int64)
        noise = noise.repeat(grain, axis=1).repeat(grain, axis=2)
        if rng.randint(2):
            noise = np.repeat(noise.sum(axis=0, keepdims=True) // 3, 3, axis=0)
        return noise
    cell = int(rng.choice([4, 8, 16, 32, 64]))  # checkerboard of two colours
    mask = (np.arange(size)[:, None] // cell + np.arange(size)[None, :] // cell) % 2
    return colours[0] * mask + colours[1] * (1 - mask)


def _integer_upsample(low: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of int64 CHW ``low`` to ``size`` x ``size``, corners on corners, floored."""
    cells = low.shape[1] - 1
    span = size - 1
    position = np.arange(size, dtype=np.int64) * cells  # in units of 1 / span of a coarse cell
    start = np.minimum(position // span, cells - 1)
    frac = position - start * span  # 0 .. span
    fy, fx = frac[None, :, None], frac[None, None, :]
    top = low[:, start][:, :, start] * (span - fx) + low[:, start][:, :, start + 1] * fx
    bottom = low[:, start + 1][:, :, start] * (span - fx) + low[:, start + 1][:, :, start + 1] * fx
    return (top * (span - fy) + bottom * fy) // (span * span)


def _input_grid(pixels: np.ndarray) -> np.ndarray:
    """uint8 NCHW pixels -> NHWC float64 integers: the zoo's normalisation ``(p / 255 - mean) / std``
    in units of 2**-_ACTIVATION_BITS, floored; one table of 3 x 256 values in Python floats."""
    table = np.array(
        [
            [math.floor((value / 255 - mean) / std * 2**_ACTIVATION_BITS) for value in range(256)]
            for mean, std in zip(ZOO_MEAN, ZOO_STD, strict=True)
        ],
        dtype=np.float64,
    )
    return np.ascontiguousarray(table[np.arange(3)[None, :, None, None], pixels].transpose(0, 2, 3, 1))


# --------------------------------------------------------------------------------------------------
# Exact arithmetic
# --------------------------------------------------------------------------------------------------


def _normal_integers(rng: np.random.RandomState, shape: tuple[int, ...]) -> np.ndarray:
    """int64 integers distributed about as N(0, 2**24), within +-6 standard deviations (Irwin-Hall:
    the centred sum of 12 uniform 12-bit integers, variance 2**24 - 1), from integer draws only."""
    terms = rng.randint(0, 2**_UNIFORM_BITS, (_IRWIN_HALL_TERMS, *shape), dtype=np.int64)
    return terms.sum(axis=0) - _IRWIN_HALL_TERMS * (2**_UNIFORM_BITS - 1) // 2


def _grid_normal(rng: np.random.RandomState, shape: tuple[int, ...], std: float, bits: int) -> np.ndarray:
    """float64 integers k, about N(0, (std * 2**bits)**2): the weights k * 2**-bits (one rounding)."""
    return np.rint(_normal_integers(rng, shape) * math.ldexp(std, bits - _UNIFORM_BITS))


def _exact_affine(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, magnitude: int) -> np.ndarray:
    """``x @ weight + bias`` for float64 arrays of integers, by BLAS, exactly; ``magnitude`` >= max|x|.

    No partial sum of any output can exceed max|x| * (largest column sum of |weight|) + max|bias| in
    magnitude; while that bound is below 2**53, every product and every partial sum is an integer that
    float64 holds exactly, so any kernel, blocking or summation order gives the same result. Raises
    ``ArithmeticError`` when the bound fails: that check is what makes the result CPU-independent.
    """
    column_sums = np.abs(weight).astype(np.int64).sum(axis=0)
    bound = magnitude * int(column_sums.max()) + int(np.abs(bias).max())
    if bound >= _EXACT:
        raise ArithmeticError(f"calibration pass not exact in float64: sums up to {bound} >= 2**53")
    y = x @ weight
    y += bias
    # A spot check of some rows against numpy's integer product (no BLAS), for a kernel that is plainly
    # wrong: OpenBLAS 0.3.20's threaded Cooperlake dgemm (numpy 1.23's) returns wrong products for
    # almost every row (OpenMathLib/OpenBLAS#5267); then the integer product is used for the lot.
    step = max(1, len(x) // 16)
    if not np.array_equal(y[::step], _integer_affine(x[::step], weight, bias)):
        _warn_wrong_blas()
        y = _integer_affine(x, weight, bias).astype(np.float64)
    return y


@functools.cache
def _warn_wrong_blas() -> None:
    _LOG.warning("BLAS returns wrong matrix products here; the test model uses integer arithmetic (slower)")


def _integer_affine(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``x @ weight + bias`` for float64 arrays of integers in int64 arithmetic (exact, no BLAS)."""
    return x.astype(np.int64) @ weight.astype(np.int64) + bias.astype(np.int64)


def _exact_int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for int64 arrays (numpy's integer loop, no BLAS), raising if it could overflow."""
    bound = int(np.abs(a).max()) * int(np.abs(b).sum(axis=0).max())
    if bound >= 2**63:
        raise ArithmeticError(f"integer product could overflow int64: sums up to {bound}")
    return a @ b


def _shrink(values: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """int64 ``values`` floor-divided by the power of two ``2**shift`` that brings them below
    ``2**bits`` in magnitude; returns (values, shift)."""
    shift = max(0, int(np.abs(values).max()).bit_length() - bits)
    return values >> shift, shift


def _to_grid(values: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """float64 ``values`` as int64 integers below ``2**bits`` in magnitude times ``2**-exponent``;
    returns (integers, exponent). One correctly rounded multiplication and rint per value."""
    exponent = bits - math.frexp(float(np.abs(values).max()))[1]
    return np.rint(values * math.ldexp(1.0, exponent)).astype(np.int64), exponent


def _eighths_power(x: float, eighths: int) -> float:
    """``x ** (eighths / 8)`` from square roots and products, all correctly rounded IEEE operations
    (libm's pow is not, and its x86-64 variant is picked per CPU)."""
    root = math.sqrt(math.sqrt(math.sqrt(x)))
    result = 1.0
    for _ in range(eighths):
        result *= root
    return result


def _symmetric_eigen(matrix: np.ndarray, sweeps: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors (columns) of a small symmetric float64 matrix by cyclic Jacobi
    rotations. Each update is elementwise (+ - * / sqrt, correctly rounded), in a fixed order, and the
    convergence test sums with ``math.fsum``: the same bits on every CPU, unlike LAPACK's."""
    a = np.array(matrix, dtype=np.float64)
    size = len(a)
    vectors = np.eye(size)
    upper = np.triu_indices(size, 1)
    for _ in range(sweeps):
        off_diagonal = math.fsum((a[upper] * a[upper]).tolist())
        if off_diagonal <= 1e-30 * math.fsum((np.diag(a) * np.diag(a)).tolist()):
            break
        for p in range(size - 1):
            for q in range(p + 1, size):
                if a[p, q] == 0.0:
                    continue
                theta = (a[q, q] - a[p, p]) / (2.0 * a[p, q])
                t = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0))
                t = -t if theta < 0 else t
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                for m in (a.T, a, vectors.T):  # columns of a, rows of a, columns of vectors
                    mp, mq = m[p].copy(), m[q].copy()
                    m[p] = c * mp - s * mq
                    m[q] = s * mp + c * mq
    return np.diag(a).copy(), vectors


# --------------------------------------------------------------------------------------------------
# Architecture and weights
# --------------------------------------------------------------------------------------------------


def _layers(num_classes: int) -> Iterator[tuple[str, int, int, int, int]]:
    """Yield ``(kind, out_channels, in_channels, kernel, pad)`` in Gluon order; kind is conv/pool/fire."""
    yield "conv", 64, 3, 3, 0
    channels = 64
    for index, (squeeze, expand1, expand3) in enumerate(FIRE_CONFIG):
        if index in POOL_BEFORE_FIRE:
            yield "pool", channels, channels, 3, 0
        yield "conv", squeeze, channels, 1, 0
        yield "conv", expand1, squeeze, 1, 0
        yield "conv", expand3, squeeze, 3, 1
        channels = expand1 + expand3
    yield "conv", num_classes, channels, 1, 0


def _init_weights(rng: np.random.RandomState) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-normal conv weights (OIHW) and small biases (std 0.01) of conv0 .. conv24, as float64
    integers: the weights are these times 2**-_WEIGHT_BITS. The classifier comes from calibration."""
    params: list[tuple[np.ndarray, np.ndarray]] = []
    for kind, out_ch, in_ch, kernel, _pad in list(_layers(0))[:-1]:
        if kind != "conv":
            continue
        he_std = math.sqrt(2.0 / (in_ch * kernel * kernel))
        weight = _grid_normal(rng, (out_ch, in_ch, kernel, kernel), he_std, _WEIGHT_BITS)
        bias = _grid_normal(rng, (out_ch,), 0.01, _WEIGHT_BITS)
        params.append((weight, bias))
    return params


def _conv_relu(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """ReLU(conv) of NHWC ``x`` with OIHW ``weight``, all float64 integers (activations in units of
    2**-_ACTIVATION_BITS, weights and biases in units of 2**-_WEIGHT_BITS); the result is floored back
    to activation units. Exact (see :func:`_exact_affine`)."""
    out_ch, in_ch, kh, kw = weight.shape
    magnitude = int(max(x.max(), -x.min()))
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    if kh == kw == 1 and stride == 1:
        columns = x.reshape(-1, in_ch)
        n, ho, wo = x.shape[:3]
    else:
        windows = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
        n, ho, wo = windows.shape[:3]
        columns = windows.reshape(n * ho * wo, in_ch * kh * kw)
    y = _exact_affine(columns, weight.reshape(out_ch, -1).T, bias * _ACTIVATION_SCALE, magnitude)
    np.maximum(y, 0.0, out=y)
    y *= _WEIGHT_UNIT
    return np.floor(y, out=y).reshape(n, ho, wo, out_ch)


def _max_pool(x: np.ndarray) -> np.ndarray:
    return sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2].max(axis=(-2, -1))


def _features(params: list[tuple[np.ndarray, np.ndarray]], pixels: np.ndarray) -> np.ndarray:
    """Exact forward pass up to the classifier input: uint8 NCHW pixels -> NHWC (N, 13, 13, 512)
    float64 integers, activations in units of 2**-_ACTIVATION_BITS. A few images at a time: arrays
    small enough for the allocator to reuse make it about twice as fast as all at once."""
    chunks = range(0, len(pixels), _IMAGES_PER_PASS)
    return np.concatenate([_chunk_features(params, pixels[i : i + _IMAGES_PER_PASS]) for i in chunks])


def _chunk_features(params: list[tuple[np.ndarray, np.ndarray]], pixels: np.ndarray) -> np.ndarray:
    x = _conv_relu(_input_grid(pixels), *params[0], stride=2, pad=0)
    for index in range(len(FIRE_CONFIG)):
        if index in POOL_BEFORE_FIRE:
            x = _max_pool(x)
        squeeze = _conv_relu(x, *params[1 + 3 * index], stride=1, pad=0)
        expand1 = _conv_relu(squeeze, *params[2 + 3 * index], stride=1, pad=0)
        expand3 = _conv_relu(squeeze, *params[3 + 3 * index], stride=1, pad=1)
        x = np.concatenate([expand1, expand3], axis=-1)
    return x


def _grid_to_float32(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float32 weights of integers in units of 2**-_WEIGHT_BITS: exactly these grid values."""
    if max(np.abs(weight).max(), np.abs(bias).max()) >= 2**24:
        raise ArithmeticError("grid weights need more than float32's 24 bits")
    return (weight * _WEIGHT_UNIT).astype(np.float32), (bias * _WEIGHT_UNIT).astype(np.float32)


def _calibrate_classifier(
    rng: np.random.RandomState, features: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """conv10 weight and bias (float32) making the scores depend on the image, not on the mean feature.

    ``features`` are the conv10 inputs (NHWC float64 integers, see :func:`_features`) of the
    calibration images. Their spatially pooled values are centred and partly whitened along their
    principal directions: with the centred features ``X = U S V^T`` (N x 512), the weight is
    ``M S^-(1 + p) U^T X = M S^-p V^T``, a random (``M``, classes x N) mix of the principal directions
    ``V``, each divided by its spread to the power p (``_WHITEN_EIGHTHS / 8``); ``U`` and ``S`` come
    from the N x N Gram matrix ``X X^T`` (Jacobi). The weight is then scaled so that the class scores
    have a standard deviation of ``_SCORE_STD`` over the calibration images. The mean feature goes
    into the bias, with a common offset that keeps the scores positive under the ReLU after conv10 (a
    common offset does not change the softmax). Without this, the mean feature, which dwarfs its
    image-to-image variation after ReLUs, decides the top class for every input.

    All sums are of integers (int64, or float64 within :func:`_exact_affine`'s bound); the floating
    point steps are elementwise and correctly rounded, so the result is the same on every CPU.
    """
    count, height, width, _ = features.shape
    positions = height * width
    if int(features.max()) * positions >= _EXACT:
        raise ArithmeticError("calibration features too large to pool exactly in float64")
    pooled = features.sum(axis=(1, 2)).astype(np.int64)  # (N, 512), exact
    # count * (pooled - mean), to 24 bits (its Gram matrix then fits int64 with room to spare)
    centred, shift = _shrink(count * pooled - pooled.sum(axis=0), 24)
    eigenvalues, eigenvectors = _symmetric_eigen(_exact_int_matmul(centred, centred.T).astype(np.float64))
    keep = eigenvalues > eigenvalues.max() * 1e-6
    singular = np.sqrt(eigenvalues[keep])
    spread = np.array([_eighths_power(float(s), _WHITEN_EIGHTHS) for s in singular])
    # U S^-(1 + p), (N, k), spanning about 18 bits from the narrowest direction to the widest: 40 bits
    # leave the widest 22 of its own
    directions, _ = _to_grid(eigenvectors[:, keep] / (singular * spread), 40)
    mixing = _normal_integers(rng, (num_classes, int(keep.sum())))
    weight, _ = _shrink(_exact_int_matmul(mixing, directions.T), 20)  # (classes, N)
    weight, _ = _shrink(_exact_int_matmul(weight, centred), 20)  # (classes, 512)
    scores = _exact_int_matmul(centred, weight.T).ravel().tolist()  # (N * classes) Python ints
    total, squares = sum(scores), sum(score * score for score in scores)
    score_std = math.sqrt(len(scores) * squares - total * total) / len(scores)
    # The centred features are count * positions * 2**(_ACTIVATION_BITS - shift) times the real ones.
    gain = math.ldexp(_SCORE_STD * count * positions, _ACTIVATION_BITS - shift) / score_std
    weight, exponent = _to_grid(weight * gain, _CLASSIFIER_BITS)
    mean_score = _exact_int_matmul(weight, pooled.sum(axis=0)).astype(np.float64)
    mean_score *= math.ldexp(1.0, -exponent - _ACTIVATION_BITS)
    mean_score /= count * positions
    noise = _normal_integers(rng, (num_classes,)) * (0.01 / 2**_UNIFORM_BITS)
    bias = _SCORE_OFFSET * _SCORE_STD - mean_score + noise
    return (weight * math.ldexp(1.0, -exponent)).astype(np.float32)[:, :, None, None], bias.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# ONNX graph
# --------------------------------------------------------------------------------------------------


def build_squeezenet11(
    path: Path, seed: int = 0, num_classes: int = 1000, weights_as_inputs: bool = True
) -> Path:
    """Write a SqueezeNet 1.1 ONNX model laid out like the model zoo's ``squeezenet1.1.onnx``; return path.

    Opset 7, IR version 3, input ``data`` float32 [1, 3, 224, 224], output ``squeezenet0_flatten0_reshape0``
    float32 [1, num_classes] of raw scores (no softmax). With ``weights_as_inputs`` every initializer is
    also a graph input, as in the old zoo files; without, the IR version is 4 (IR 3 does not allow
    initializers that are not inputs), and MXNet 1.9.1's ONNX importer fails on the file with a
    ``KeyError`` on the first weight name (it makes variables only for graph inputs), which makes it a
    handy "bad model" fixture; onnxruntime runs both variants.

    Byte-identical files for a given ``seed`` on every x86-64 CPU; takes about a second.
    """
    path = Path(path)
    rng = np.random.RandomState(seed)
    grid = _init_weights(rng)
    features = _features(grid, calibration_pixels(_CALIBRATION_IMAGES, seed=seed + 7919))
    params = [_grid_to_float32(weight, bias) for weight, bias in grid]
    params.append(_calibrate_classifier(rng, features, num_classes))

    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    counters = {"conv": 0, "relu": 0, "pool": 0, "concat": 0}

    def name(kind: str) -> str:
        index = counters[kind]
        counters[kind] += 1
        return f"{PREFIX}{kind}{index}"

    def conv_relu(x: str, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> str:
        conv = name("conv")
        initializers.append(numpy_helper.from_array(weight, f"{conv}_weight"))
        initializers.append(numpy_helper.from_array(bias, f"{conv}_bias"))
        kernel = int(weight.shape[-1])
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{conv}_weight", f"{conv}_bias"],
                [f"{conv}_fwd"],
                name=f"{conv}_fwd",
                dilations=[1, 1],
                group=1,
                kernel_shape=[kernel, kernel],
                pads=[pad, pad, pad, pad],
                strides=[stride, stride],
            )
        )
        relu = name("relu")
        nodes.append(helper.make_node("Relu", [f"{conv}_fwd"], [f"{relu}_fwd"], name=f"{relu}_fwd"))
        return f"{relu}_fwd"

    def pool(x: str, op: str, kernel: int, stride: int) -> str:
        pool_name = name("pool")
        nodes.append(
            helper.make_node(
                op,
                [x],
                [f"{pool_name}_fwd"],
                name=f"{pool_name}_fwd",
                kernel_shape=[kernel, kernel],
                pads=[0, 0, 0, 0],
                strides=[stride, stride],
            )
        )
        return f"{pool_name}_fwd"

    x = conv_relu(INPUT_NAME, *params[0], stride=2, pad=0)
    for index in range(len(FIRE_CONFIG)):
        if index in POOL_BEFORE_FIRE:
            x = pool(x, "MaxPool", 3, 2)
        squeeze = conv_relu(x, *params[1 + 3 * index], stride=1, pad=0)
        expand1 = conv_relu(squeeze, *params[2 + 3 * index], stride=1, pad=0)
        expand3 = conv_relu(squeeze, *params[3 + 3 * index], stride=1, pad=1)
        concat = name("concat")
        nodes.append(helper.make_node("Concat", [expand1, expand3], [concat], name=concat, axis=1))
        x = concat
    dropout = f"{PREFIX}dropout0_fwd"
    nodes.append(helper.make_node("Dropout", [x], [dropout], name=dropout, ratio=0.5))
    x = conv_relu(dropout, *params[-1], stride=1, pad=0)
    x = pool(x, "AveragePool", 13, 13)
    nodes.append(helper.make_node("Flatten", [x], [OUTPUT_NAME], name=OUTPUT_NAME, axis=1))

    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, list(INPUT_SHAPE))]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in initializers]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, num_classes])]
    graph = helper.make_graph(nodes, "squeezenet0", inputs, outputs, initializer=initializers)
    model = helper.make_model(
        graph, producer_name=PRODUCER_NAME, opset_imports=[helper.make_opsetid("", OPSET)]
    )
    helper.set_model_props(model, {TEST_ONLY_KEY: TEST_ONLY_VALUE.format(seed=seed)})
    # IR version 3 requires every initializer to be a graph input; 4 is the first that does not.
    model.ir_version = IR_VERSION if weights_as_inputs else 4
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def param_count(model_path: Path) -> int:
    """Number of weights (initializer elements) in an ONNX model."""
    model = onnx.load(str(model_path))
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)


# --------------------------------------------------------------------------------------------------
# Reference inference
# --------------------------------------------------------------------------------------------------


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def reference_probabilities(model_path: Path, batch: np.ndarray) -> np.ndarray:
    """Softmax probabilities (N, classes) float64 of onnxruntime (CPU) on NCHW ``batch``, one image a run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # initializers listed as inputs make ORT warn once per weight
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    batch = np.asarray(batch, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[None]
    scores = [session.run(None, {input_name: image[None]})[0][0] for image in batch]
    return softmax(np.stack(scores))
