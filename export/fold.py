"""Fold every BatchNorm into the convolution before it, so the graph carries no BatchNormalization.

torch's ONNX exporter folds Conv+BN itself but not ConvTranspose+BN (the student's upsampling),
so we fold all pairs in torch, where ``fuse_conv_bn_eval`` handles both, before exporting.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _fold_named_pairs(module: nn.Module) -> int:
    """Blocks and stems name their pairs conv1/bn1, conv2/bn2, ...: fold those."""
    folded = 0
    for name, child in list(module.named_children()):
        if not (name.startswith("bn") and isinstance(child, nn.BatchNorm2d)):
            continue
        conv_name = "conv" + name[2:]
        conv = getattr(module, conv_name, None)
        if isinstance(conv, _CONVS):
            setattr(
                module,
                conv_name,
                fuse_conv_bn_eval(conv, child, transpose=isinstance(conv, nn.ConvTranspose2d)),
            )
            setattr(module, name, nn.Identity())
            folded += 1
    return folded


def _fold_sequential(seq: nn.Sequential) -> int:
    """Shortcut branches are Sequential(conv, bn)."""
    folded = 0
    for i in range(len(seq) - 1):
        conv, bn = seq[i], seq[i + 1]
        if isinstance(conv, _CONVS) and isinstance(bn, nn.BatchNorm2d):
            seq[i] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
            seq[i + 1] = nn.Identity()
            folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> int:
    """Fold in place (model must be in eval mode); returns the number of folded pairs.

    Any BatchNorm left unfolded is an error: it would reach TensorRT as a separate layer.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    folded = 0
    for module in list(model.modules()):
        folded += _fold_named_pairs(module)
        if isinstance(module, nn.Sequential):
            folded += _fold_sequential(module)
    left = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left:
        raise RuntimeError(f"BatchNorm layers without a preceding convolution: {left}")
    return folded
