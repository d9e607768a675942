"""ResNet-18 encoder with MarrNet's stem: the 2D backbone of SketchNet and VoxelNet.

The only change from torchvision's resnet18 is the paper's: conv1 is 3x3 / stride 2 / padding 1
instead of 7x7. The max-pool stays, so a 256 x 256 input ends at 512 x 8 x 8 (stride 32), the
paper's figure. `in_channels` (RGB = 3, 2.5D sketch = 5) and a `width` multiplier (channels 64w,
128w, 256w, 512w) are configurable.

Attribute names are torchvision's exactly (conv1, bn1, relu, maxpool, layer1..layer4; blocks with
conv1, bn1, conv2, bn2, downsample.0/.1), so ImageNet weights load with
`load_torchvision_state_dict` (conv1 adapted, fc dropped). Those weights expect ImageNet-normalised
input; feed them that.
"""

from __future__ import annotations

from typing import Dict, List, Mapping

import torch
from torch import nn

from recon.runtime.errors import ModelError

# Channels of layer1..layer4 at width 1, and blocks per layer (ResNet-18).
BASE_CHANNELS = (64, 128, 256, 512)
LAYERS = (2, 2, 2, 2)


def scaled_channels(width: float) -> List[int]:
    """Channels of layer1..layer4 at `width` (rounded, at least 1)."""
    return [max(1, int(round(c * width))) for c in BASE_CHANNELS]


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; torchvision's BasicBlock, same attribute names."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        # A 1x1 projection only when the shape changes, as in torchvision (keys downsample.0/.1).
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet-18 feature pyramid. `channels` lists the channels of the five maps `forward` returns."""

    def __init__(self, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        if in_channels < 1 or width <= 0:
            raise ValueError(f"ResNetEncoder: need in_channels >= 1 and width > 0, got {in_channels}, {width}")
        c1, c2, c3, c4 = scaled_channels(width)
        self.in_channels = in_channels
        self.width = width
        # stem, layer1, layer2, layer3, layer4 (the stem has layer1's channels, as in torchvision)
        self.channels = [c1, c1, c2, c3, c4]
        # The paper's stem: 3x3 stride 2 (torchvision: 7x7), then the usual 3x3/2 max-pool.
        self.conv1 = nn.Conv2d(in_channels, c1, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(c1, c1, LAYERS[0], stride=1)
        self.layer2 = self._make_layer(c1, c2, LAYERS[1], stride=2)
        self.layer3 = self._make_layer(c2, c3, LAYERS[2], stride=2)
        self.layer4 = self._make_layer(c3, c4, LAYERS[3], stride=2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _make_layer(in_ch: int, out_ch: int, blocks: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            BasicBlock(in_ch, out_ch, stride), *[BasicBlock(out_ch, out_ch) for _ in range(blocks - 1)]
        )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Return [stem, layer1, layer2, layer3, layer4] at strides 2, 4, 8, 16, 32 (U-Net skips).

        The stem map is taken before the max-pool so the pyramid has one map per resolution.
        """
        stem = self.relu(self.bn1(self.conv1(x)))  # (B, c1, H/2, W/2)
        f1 = self.layer1(self.maxpool(stem))  # (B, c1, H/4, W/4)
        f2 = self.layer2(f1)  # (B, c2, H/8, W/8)
        f3 = self.layer3(f2)  # (B, c3, H/16, W/16)
        f4 = self.layer4(f3)  # (B, c4, H/32, W/32)
        return [stem, f1, f2, f3, f4]


def _adapt_conv1(weight: torch.Tensor, target_shape: torch.Size) -> torch.Tensor:
    """Fit torchvision's conv1 weight (out, 3, 7, 7) to our (out, in_channels, 3, 3).

    Kernel: keep the centre 3x3 (the taps that the 3x3 stem actually sees).
    Channels (as timm's adapt_input_conv): 1 channel sums the RGB filters; more than 3 repeats them
    and scales by 3/in so a grey-ish input gives the same response magnitude as before.
    """
    out_ch, in_ch, kh, kw = target_shape
    k = weight.shape[-1]
    top, left = (weight.shape[-2] - kh) // 2, (k - kw) // 2
    weight = weight[:, :, top : top + kh, left : left + kw]  # (out, 3, 3, 3)
    src_in = weight.shape[1]
    if in_ch == src_in:
        return weight.clone()
    if in_ch == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_ch // src_in)  # ceil
    return weight.repeat(1, reps, 1, 1)[:, :in_ch] * (src_in / in_ch)


def load_torchvision_state_dict(encoder: ResNetEncoder, state_dict: Mapping[str, torch.Tensor]) -> Dict[str, list]:
    """Load a torchvision resnet18 state_dict into `encoder`; return {"loaded", "adapted", "skipped"} keys.

    Every encoder key must be present with a matching shape (conv1.weight is adapted: 7x7 -> centre
    3x3, in_channels != 3 by summing/repeating); keys the encoder lacks (fc.*) are skipped. A missing
    key or any other shape mismatch (e.g. width != 1) raises ModelError rather than half-loading.
    """
    own = encoder.state_dict()
    missing = [k for k in own if k not in state_dict]
    if missing:
        raise ModelError(f"torchvision state_dict lacks {len(missing)} encoder keys, e.g. {missing[:3]}")
    new, adapted = {}, []
    for key, target in own.items():
        src = state_dict[key]
        adaptable = src.dim() == 4 and src.shape[0] == target.shape[0] and src.shape[-1] >= target.shape[-1]
        if key == "conv1.weight" and src.shape != target.shape and adaptable:
            src = _adapt_conv1(src, target.shape)
            adapted.append(key)
        if src.shape != target.shape:
            raise ModelError(
                f"torchvision key {key}: shape {tuple(src.shape)} != encoder's {tuple(target.shape)}"
                f" (pretrained weights need width=1.0)"
            )
        new[key] = src.to(dtype=target.dtype)
    encoder.load_state_dict(new, strict=True)
    return {"loaded": list(new), "adapted": adapted, "skipped": [k for k in state_dict if k not in own]}
