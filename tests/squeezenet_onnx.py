"""A stand-in for the ONNX model zoo's ``squeezenet1.1.onnx``, built offline with seeded weights.

The real file (https://github.com/onnx/models, ``squeezenet1.1-7.onnx``) is a Gluon export: opset 7,
IR version 3, input ``data`` float32 ``[1, 3, 224, 224]``, output ``squeezenet0_flatten0_reshape0``
float32 ``[1, 1000]`` of raw class scores, and every weight listed both as an initializer and as a graph
input. :func:`build_squeezenet11` writes a file with the same layout, architecture, node and tensor names,
so the archive builder, the MMS handler and MXNet's ONNX importer see what they would see with the real
one. The weights are random (He-normal, seeded), except the classifier (``conv10``), which is calibrated
with a small numpy forward pass so that, like a trained net, the scores are well separated and the top-1
class depends on the image (a plain random net predicts the same class for every input).

:func:`reference_probabilities` runs a model with onnxruntime and returns softmax probabilities, the
ground truth to compare the MXNet-served results with. This is a plain module, not a test file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

INPUT_NAME = "data"
OUTPUT_NAME = "squeezenet0_flatten0_reshape0"
INPUT_SHAPE = (1, 3, 224, 224)
OPSET = 7
IR_VERSION = 3
PREFIX = "squeezenet0_"

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

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

# Classifier calibration (see _calibrate_classifier): number of synthetic images; how far the spread of
# their pooled features is equalised (1 = whitened, 0 = left as is); standard deviation of the class
# scores over the calibration images; common score offset, in units of that deviation. Tuned so that on
# smooth natural-looking images the softmax top-1 probability is mostly 0.2-0.95 with distinct top-5
# probabilities, and that different images get different top-1 classes.
_CALIBRATION_IMAGES = 24
_WHITEN_POWER = 0.75
_SCORE_STD = 5.0
_SCORE_OFFSET = 10.0


# --------------------------------------------------------------------------------------------------
# Synthetic images
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


def _random_pattern(rng: np.random.RandomState, size: int) -> np.ndarray:
    """One random CHW image in [0, 1]: smooth field, solid colour, gradient, noise or checkerboard."""
    kind = rng.randint(5)
    colours = rng.uniform(0.0, 1.0, (2, 3, 1, 1))
    if kind == 0:
        return _smooth(rng, size)
    if kind == 1:
        return np.broadcast_to(colours[0], (3, size, size)).copy()
    ramp = np.linspace(0.0, 1.0, size)
    if kind == 2:
        angle = rng.uniform(0.0, 2 * np.pi)
        t = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
        t = (t - t.min()) / (t.max() - t.min())
        return colours[0] * (1 - t) + colours[1] * t
    if kind == 3:
        grain = int(rng.choice([1, 2, 4]))
        noise = rng.uniform(0.0, 1.0, (3, size // grain, size // grain)).repeat(grain, 1).repeat(grain, 2)
        if rng.rand() < 0.5:
            noise = noise.mean(axis=0, keepdims=True).repeat(3, axis=0)
        return noise
    cell = int(rng.choice([4, 8, 16, 32, 64]))
    mask = (np.arange(size)[:, None] // cell + np.arange(size)[None, :] // cell) % 2
    return colours[0] * mask + colours[1] * (1 - mask)


def random_images(count: int, seed: int = 0, size: int = 224) -> np.ndarray:
    """``count`` normalised NCHW images of random kinds (smooth, solid, gradient, noise, checkerboard)."""
    rng = np.random.RandomState(seed)
    return np.stack([normalize(np.clip(_random_pattern(rng, size), 0.0, 1.0)) for _ in range(count)])


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


def _init_weights(rng: np.random.RandomState, num_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-normal conv weights (OIHW float32) and small biases, in Gluon conv order (conv0 .. conv25)."""
    params: list[tuple[np.ndarray, np.ndarray]] = []
    for kind, out_ch, in_ch, kernel, _pad in _layers(num_classes):
        if kind != "conv":
            continue
        fan_in = in_ch * kernel * kernel
        weight = rng.normal(0.0, np.sqrt(2.0 / fan_in), (out_ch, in_ch, kernel, kernel)).astype(np.float32)
        bias = rng.normal(0.0, 0.01, out_ch).astype(np.float32)
        params.append((weight, bias))
    return params


def _conv_relu(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """ReLU(conv) of NHWC float32 ``x`` with OIHW ``weight``."""
    out_ch, in_ch, kh, kw = weight.shape
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    if kh == kw == 1 and stride == 1:
        y = x @ weight[:, :, 0, 0].T
    else:
        windows = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
        n, ho, wo = windows.shape[:3]
        y = (windows.reshape(n * ho * wo, in_ch * kh * kw) @ weight.reshape(out_ch, -1).T).reshape(
            n, ho, wo, -1
        )
    y += bias
    return np.maximum(y, 0.0, out=y)


def _max_pool(x: np.ndarray) -> np.ndarray:
    return sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2].max(axis=(-2, -1))


def _features(params: list[tuple[np.ndarray, np.ndarray]], images: np.ndarray) -> np.ndarray:
    """numpy forward pass up to the classifier input: NCHW images -> NHWC features (N, 13, 13, 512)."""
    x = np.ascontiguousarray(images.transpose(0, 2, 3, 1), dtype=np.float32)
    x = _conv_relu(x, *params[0], stride=2, pad=0)
    for index in range(len(FIRE_CONFIG)):
        if index in POOL_BEFORE_FIRE:
            x = _max_pool(x)
        squeeze = _conv_relu(x, *params[1 + 3 * index], stride=1, pad=0)
        expand1 = _conv_relu(squeeze, *params[2 + 3 * index], stride=1, pad=0)
        expand3 = _conv_relu(squeeze, *params[3 + 3 * index], stride=1, pad=1)
        x = np.concatenate([expand1, expand3], axis=-1)
    return x


def _calibrate_classifier(
    rng: np.random.RandomState, features: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """conv10 weight and bias making the scores depend on the image rather than on the mean feature.

    ``features`` are the conv10 inputs (NHWC) of the calibration images. Their spatially pooled values
    are centred and (partly) whitened along their principal directions, and each class score is a
    random projection of those coordinates, scaled to a standard deviation of ``_SCORE_STD``. The mean
    feature goes into the bias, together with a common offset that keeps the scores positive under the
    ReLU after conv10 (a common offset does not change the softmax). Without this, the mean feature,
    which dwarfs its image-to-image variation after ReLUs, decides the top class for every input.
    """
    pooled = features.mean(axis=(1, 2)).astype(np.float64)  # (N, 512)
    mean = pooled.mean(axis=0)
    _, singular, vt = np.linalg.svd(pooled - mean, full_matrices=False)
    keep = singular > singular[0] * 1e-3
    spread = singular[keep] / np.sqrt(len(pooled))
    whiten = vt[keep] / spread[:, None] ** _WHITEN_POWER  # (k, 512)
    mixing = rng.normal(0.0, 1.0, (num_classes, int(keep.sum())))
    weight = mixing @ whiten  # (classes, 512)
    weight *= _SCORE_STD / ((pooled - mean) @ weight.T).std()
    bias = _SCORE_OFFSET * _SCORE_STD - weight @ mean + rng.normal(0.0, 0.01, num_classes)
    return weight.astype(np.float32)[:, :, None, None], bias.astype(np.float32)


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

    Deterministic for a given ``seed`` (byte-identical files); takes about half a second.
    """
    path = Path(path)
    rng = np.random.RandomState(seed)
    params = _init_weights(rng, num_classes)
    calibration = random_images(_CALIBRATION_IMAGES, seed=seed + 7919)
    params[-1] = _calibrate_classifier(rng, _features(params[:-1], calibration), num_classes)

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
        graph, producer_name="squeezenet_onnx (test fixture)", opset_imports=[helper.make_opsetid("", OPSET)]
    )
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
