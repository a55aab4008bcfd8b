"""The MXNet graph that MXNet's ONNX importer returns, rewritten so that oneDNN runs all of it, and
the classifier widened to a channel count oneDNN's fast kernels take."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def _passes_through(node: dict[str, Any]) -> bool:
    """True for an operator that returns its first input unchanged when not training."""
    attrs = node.get("attrs", {})
    if node["op"] == "Pad":
        widths = attrs.get("pad_width", "").strip("()[] ").split(",")
        return all(int(width) == 0 for width in widths if width.strip())
    if node["op"] == "Dropout":
        return attrs.get("mode", "training") == "training"  # mode "always" drops at inference too
    return False


def optimize_symbol(sym: Any) -> Any:
    """The graph MXNet's ONNX importer returns, rewritten so that oneDNN (MKLDNN) runs all of it.

    On binding, MXNet's MKLDNN subgraph pass fuses ``Convolution`` + ``Activation(act_type='relu')``
    into one oneDNN convolution with a ReLU post-op, and oneDNN operators hand each other tensors in
    its blocked memory layout. The imported SqueezeNet 1.1 defeats both:

    - ONNX ``Relu`` becomes the bare ``relu`` operator, which the pass does not fuse and which has no
      oneDNN kernel: 26 extra operators, each converting its input back to plain NCHW and its output
      back to blocked. Rewritten to ``Activation(act_type='relu')``: the same function.
    - Every ONNX ``MaxPool``/``AveragePool`` becomes ``Pad`` + ``Pooling``, even when the pads are all
      zero (here: all four). ``Pad`` has no oneDNN kernel either, so each one costs two layout
      conversions and a copy. A ``Pad`` whose ``pad_width`` is all zeros is dropped, its consumers
      reading its input instead.
    - ``Dropout`` (mode ``training``) is the identity when not training, but the executor still runs a
      copy for it: dropped the same way. ``mode='always'`` is kept.

    Left alone: ``Flatten`` at the end (a reshape of N x 1000 scores, the output has to be plain NCHW
    anyway) and ``Concat`` (oneDNN has it). Batch-1 p50 on 2 cores (Xeon, AVX-512), MXNet's default
    threaded engine: 19 ms as imported, 16 ms with the Pads dropped only, 9.4 ms with the ReLU rewrite
    only, 6.8 ms with both; with the handler's NaiveEngine (see :func:`import_mxnet`) 11 ms -> 3.7 ms,
    faster than MXNet Gluon's own model_zoo SqueezeNet 1.1 (4.3 ms; ``python -m benchmarks.run``).
    Scores are unchanged up to float rounding. Idempotent: applying it to its own result (a converted
    checkpoint) changes nothing.
    """
    import mxnet as mx

    graph = json.loads(sym.tojson())
    nodes: list[dict[str, Any]] = graph["nodes"]
    read = {(entry[0], entry[1]) for node in nodes for entry in node["inputs"]}
    read |= {(head[0], head[1]) for head in graph["heads"]}
    replaced: dict[int, list[int]] = {}  # index of a dropped node -> the entry it passed through
    kept: list[int] = []
    for index, node in enumerate(nodes):  # topological order: inputs are resolved before their readers
        node["inputs"] = [replaced.get(entry[0], entry) for entry in node["inputs"]]
        extra_outputs_read = any(i == index and output > 0 for i, output in read)  # e.g. a dropout mask
        if _passes_through(node) and not extra_outputs_read:
            replaced[index] = node["inputs"][0]
            continue
        if node["op"] == "relu":
            hidden = {k: v for k, v in node.get("attrs", {}).items() if k.startswith("__")}
            node["op"], node["attrs"] = "Activation", {**hidden, "act_type": "relu"}
        kept.append(index)
    position = {old: new for new, old in enumerate(kept)}

    def renumber(entry: list[int]) -> list[int]:
        return [position[entry[0]], entry[1], entry[2] if len(entry) > 2 else 0]

    graph["nodes"] = [dict(nodes[i], inputs=[renumber(e) for e in nodes[i]["inputs"]]) for i in kept]
    graph["arg_nodes"] = [position[i] for i in graph["arg_nodes"]]  # variables are never dropped
    graph["heads"] = [renumber(replaced.get(head[0], head)) for head in graph["heads"]]
    graph.pop("node_row_ptr", None)  # recomputed by the loader
    return mx.sym.load_json(json.dumps(graph))


# Operators whose output channel c depends on input channel c only (Flatten: when the input is N x C x 1 x 1).
_CHANNELWISE_OPS = ("Activation", "relu", "Pooling", "Pad", "Dropout", "Flatten")


def pad_output_channels(
    sym: Any, arg_params: dict, input_name: str, input_shape: tuple[int, ...], multiple: int = 16
) -> tuple[Any, dict]:
    """Widen the classifier convolution to a multiple of ``multiple`` output channels with zero weights,
    and slice the extra scores off the output: the same scores, computed faster.

    oneDNN's fast AVX-512 convolutions (``brgconv``) take channel counts in multiples of 16. SqueezeNet's
    last convolution has 1000 (512 -> 1000, 1x1, on 13x13) and falls back to an AVX2 kernel with an 8-wide
    blocked layout, plus layout conversions around it: about 0.8 ms of a 3.4 ms batch-1 forward pass on 2
    cores, for a quarter of the network's multiply-adds. With 1008 channels it runs with the others:
    -10% at batch 1 and 8. Only a convolution followed by channel-wise operators up to the output (ReLU,
    pooling, flatten of a 1x1 map) is widened; the extra channels are zero before the slice, and are
    dropped by it whatever those operators make of them. Anything else is returned unchanged.
    """
    import mxnet as mx

    graph = json.loads(sym.tojson())
    nodes: list[dict[str, Any]] = graph["nodes"]
    if len(graph["heads"]) != 1:
        return sym, arg_params
    internals = sym.get_internals()
    _, shapes, _ = internals.infer_shape_partial(**{input_name: input_shape})
    shape_of = dict(zip(internals.list_outputs(), shapes, strict=True))
    index = graph["heads"][0][0]
    while nodes[index]["op"] in _CHANNELWISE_OPS:
        node, source = nodes[index], nodes[nodes[index]["inputs"][0][0]]
        if node["op"] == "Pad" and any(int(w) for w in node["attrs"]["pad_width"].strip("()").split(",")[:4]):
            return sym, arg_params  # pads the batch or channel axis
        if node["op"] == "Flatten" and tuple(shape_of.get(f"{source['name']}_output", ()))[2:] != (1, 1):
            return sym, arg_params  # would interleave channels with positions
        index = node["inputs"][0][0]
    conv = nodes[index]
    if conv["op"] != "Convolution" or conv["attrs"].get("num_group", "1") != "1":
        return sym, arg_params
    channels = int(conv["attrs"]["num_filter"])
    if channels % multiple == 0:
        return sym, arg_params
    wide = -(-channels // multiple) * multiple
    padded = dict(arg_params)
    for entry in conv["inputs"][1:]:  # weight (F, C, kh, kw), then bias (F,) unless no_bias
        variable = nodes[entry[0]]
        weights = arg_params[variable["name"]].asnumpy()
        zeros = np.zeros((wide - channels, *weights.shape[1:]), dtype=weights.dtype)
        padded[variable["name"]] = mx.nd.array(np.concatenate([weights, zeros]), dtype=weights.dtype)
        if "__shape__" in variable.get("attrs", {}):  # the ONNX importer records weight shapes
            variable["attrs"]["__shape__"] = str(padded[variable["name"]].shape)
    conv["attrs"]["num_filter"] = str(wide)
    graph.pop("node_row_ptr", None)
    widened = mx.sym.load_json(json.dumps(graph))
    name = f"{sym.list_outputs()[0].removesuffix('_output')}_classes"
    return mx.sym.slice_axis(widened, axis=1, begin=0, end=channels, name=name), padded
