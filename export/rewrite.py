"""Graph rewrites that keep the fused graph's arithmetic and change its form for a quantizer.

``conv_transpose_as_conv``: the student's 2x2 stride-2 ConvTranspose upsamplings as a 1x1 Conv
producing the four sub-pixel phases, then DepthToSpace (blocksize 2). ONNX Runtime has no int8
ConvTranspose kernel, so in the cpu int8 flavour those layers used to stay float between a
DequantizeLinear and a QuantizeLinear; as a Conv they run in int8 like the rest. In fp32 the two
forms compute the same sums (tested to 1e-6).

For a ConvTranspose ``W [C_in, C_out, 2, 2]``, bias ``b [C_out]``:
``y[co, 2i+a, 2j+c] = sum_ci x[ci, i, j] W[ci, co, a, c] + b[co]``. DepthToSpace in DCR mode
reads channel ``(a*2 + c) * C_out + co`` into ``y[co, 2i+a, 2j+c]``, so the 1x1 Conv's weight is
``W'[(a*2+c)*C_out + co, ci, 0, 0] = W[ci, co, a, c]`` and its bias ``b'[(a*2+c)*C_out + co] = b[co]``.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _attrs(node: onnx.NodeProto) -> Dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _rewritable(node: onnx.NodeProto, weight: Optional[np.ndarray]) -> bool:
    """A 2x2 stride-2 ConvTranspose without padding, groups or output padding, constant weight."""
    if node.op_type != "ConvTranspose" or weight is None or weight.ndim != 4 or weight.shape[2:] != (2, 2):
        return False
    a = _attrs(node)
    return (
        list(a.get("strides", [1, 1])) == [2, 2]
        and list(a.get("dilations", [1, 1])) == [1, 1]
        and int(a.get("group", 1)) == 1
        and not any(a.get("pads", [0] * 4))
        and not any(a.get("output_padding", [0, 0]))
        and "output_shape" not in a
        and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )


def conv_transpose_as_conv(model: onnx.ModelProto) -> int:
    """Rewrite, in place, every rewritable ConvTranspose (see module doc); returns how many.

    The Conv keeps the ConvTranspose's name with ``/as_conv`` appended (so name-prefix scopes still
    select it), the DepthToSpace gets ``/depth_to_space`` and writes the original output.
    """
    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    count = 0
    for node in model.graph.node:
        weight_init = inits.get(node.input[1]) if len(node.input) > 1 else None
        weight = numpy_helper.to_array(weight_init) if weight_init is not None else None
        if not _rewritable(node, weight):
            nodes.append(node)
            continue
        c_in, c_out = weight.shape[:2]
        # [C_in, C_out, a, c] -> [a, c, C_out, C_in] -> [(a*2+c)*C_out + co, C_in, 1, 1]
        w1 = np.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(4 * c_out, c_in, 1, 1))
        w_name = f"{node.input[1]}/as_conv"
        model.graph.initializer.append(numpy_helper.from_array(w1, w_name))
        inputs = [node.input[0], w_name]
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(inits[node.input[2]])
            b_name = f"{node.input[2]}/as_conv"
            model.graph.initializer.append(numpy_helper.from_array(np.tile(bias, 4), b_name))
            inputs.append(b_name)
        phases = f"{node.output[0]}/phases"  # [N, 4*C_out, H, W]
        nodes.append(
            helper.make_node(
                "Conv", inputs, [phases], name=f"{node.name}/as_conv", kernel_shape=[1, 1], strides=[1, 1]
            )
        )
        nodes.append(
            helper.make_node(
                "DepthToSpace",
                [phases],
                list(node.output),
                name=f"{node.name}/depth_to_space",
                blocksize=2,
                mode="DCR",
            )
        )
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return count
