"""The trained U-Net (:mod:`recon.learning.unet`) as an ONNX graph with the metadata
:func:`recon.spect.learnedmap.load` reads (camera, grid, photopeak, version)."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: The ONNX opset the graph is written in (onnxruntime reads 7 to 21 and more).
OPSET = 17


def graph_bytes(params, levels: int, metadata: dict[str, object]) -> bytes:
    """The serialized ONNX model of ``params`` (input ``x`` [n, c, h, w] float32, output ``mu``
    [n, 1, h, w] in 1/cm); ``metadata`` is kept as the model's string properties."""
    nodes, inits = [], []
    it = iter(enumerate(params))
    counter = [0]

    def name(stem: str) -> str:
        counter[0] += 1
        return f"{stem}{counter[0]}"

    def conv(x: str, relu: bool = True) -> str:
        i, (w, b) = next(it)
        w, b = np.asarray(w, np.float32), np.asarray(b, np.float32)
        inits.extend([numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")])
        pad = w.shape[-1] // 2
        y = name("conv")
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [y],
                                      kernel_shape=list(w.shape[2:]), pads=[pad] * 4))
        if not relu:
            return y
        z = name("relu")
        nodes.append(helper.make_node("Relu", [y], [z]))
        return z

    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    x, skips = "x", []
    for _ in range(levels):
        x = conv(conv(x))
        skips.append(x)
        y = name("pool")
        nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[2, 2], strides=[2, 2]))
        x = y
    x = conv(conv(x))
    for skip in reversed(skips):
        up, cat = name("up"), name("cat")
        nodes.append(helper.make_node("Resize", [x, "", "scales"], [up], mode="nearest",
                                      coordinate_transformation_mode="asymmetric",
                                      nearest_mode="floor"))
        nodes.append(helper.make_node("Concat", [up, skip], [cat], axis=1))
        x = conv(conv(cat))
    nodes.append(helper.make_node("Identity", [conv(x, relu=False)], ["mu"]))
    channels = int(np.asarray(params[0][0]).shape[1])
    graph = helper.make_graph(
        nodes, "learned_mumap",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, "h", "w"])],
        [helper.make_tensor_value_info("mu", TensorProto.FLOAT, ["n", 1, "h", "w"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="bedside-pet recon.learning")
    model.ir_version = 8
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(model)
    return model.SerializeToString()
