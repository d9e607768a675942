"""SketchNet: RGB -> 2.5D sketch (normals, depth, silhouette), MarrNet's first stage.

Encoder: `ResNetEncoder` (3x3/2 stem + max-pool), 512 x 8 x 8 at a 256 input (width 1).
Decoder: the paper's up-sampling layer, ConvTranspose2d(kernel 5, stride 2, padding 2,
output_padding 1) + BN + ReLU, each doubling the resolution, with U-Net skips: the encoder map of
the same resolution is concatenated onto each output.

Fifth stage (our choice): the paper's four layers take 8x8 back to 128x128 only, half the input.
We add a fifth layer of the same kind (8 -> 16 -> 32 -> 64 -> 128 -> 256). The encoder's finest map
(the stem) is at half resolution, so this stage has no skip; it halves the channels, and the heads
read its full-resolution output. Any input side that is a multiple of 32 works (128, 256, ...).

Heads (3x3 convs on the last stage):
- normals: 3 channels, L2-normalised per pixel to unit length (camera space, design.md),
- depth: 1 channel, unconstrained (the loss decides how background is treated),
- silhouette: 1 channel of logits (sigmoid / BCE-with-logits outside).
No loss reads the fourth output, `features` (the two deepest encoder maps, averaged): the runtime's
confidence learns from them whether the picture shows a kind of object the model knows.

`LiteSketchNet` (the `edge2` preset) keeps the contract with a faster body: an ImageNet-pretrained
EfficientNet-Lite0 encoder (recon.train.encoders), up-sampling by nearest resize + 3x3 convolution
instead of ConvTranspose (no checkerboard artefacts, and plain convolutions run nearer the CPU's
peak), and one merged 5-channel head instead of three thin ones.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from recon.train.encoders import Lite0Encoder, load_lite0_weights
from recon.train.resnet import ResNetEncoder


class UpBlock2d(nn.Module):
    """x2 up-sampling: ConvTranspose2d(5, stride 2, padding 2, output_padding 1) + BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_ch, out_ch, 5, stride=2, padding=2, output_padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.deconv(x)))


class ResizeUp2d(nn.Module):
    """x2 up-sampling: nearest resize, 3x3 conv + BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))))


def sketch_outputs(normals: torch.Tensor, depth: torch.Tensor, silhouette_logits: torch.Tensor,
                   deepest: torch.Tensor, second: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The sketch, and `features`: the encoder's two deepest maps averaged over the picture, (B, C4 + C3),
    what the picture looks like to the net (the runtime's confidence weighs them: recon.runtime.confidence)."""
    return {"normals": F.normalize(normals, dim=1, eps=1e-6), "depth": depth, "silhouette_logits": silhouette_logits,
            "features": torch.cat([deepest.mean(dim=(2, 3)), second.mean(dim=(2, 3))], dim=1)}


class SketchNet(nn.Module):
    """RGB (B, 3, H, W), H and W multiples of 32 -> dict(normals, depth, silhouette_logits) at (H, W), features."""

    def __init__(self, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        self.encoder = ResNetEncoder(in_channels=in_channels, width=width)
        c0, c1, c2, c3, c4 = self.encoder.channels  # stem, layer1..layer4
        # Each stage outputs the channels of the skip it is concatenated with (U-Net symmetry), so
        # the next stage reads twice that.
        self.up1 = UpBlock2d(c4, c3)  # H/32 -> H/16, + layer3
        self.up2 = UpBlock2d(2 * c3, c2)  # H/16 -> H/8, + layer2
        self.up3 = UpBlock2d(2 * c2, c1)  # H/8 -> H/4, + layer1
        self.up4 = UpBlock2d(2 * c1, c0)  # H/4 -> H/2, + stem
        self.up5 = UpBlock2d(2 * c0, max(1, c0 // 2))  # H/2 -> H, no skip (see module docstring)
        head_ch = max(1, c0 // 2)
        self.normals_head = nn.Conv2d(head_ch, 3, 3, padding=1)
        self.depth_head = nn.Conv2d(head_ch, 1, 3, padding=1)
        self.silhouette_head = nn.Conv2d(head_ch, 1, 3, padding=1)

    def forward(self, rgb: torch.Tensor) -> Dict[str, torch.Tensor]:
        """`rgb` (B, 3, H, W), normalised float. Returns normals (B,3,H,W), depth and silhouette_logits (B,1,H,W), features (B, C4 + C3)."""
        stem, f1, f2, f3, f4 = self.encoder(rgb)  # strides 2, 4, 8, 16, 32
        x = torch.cat([self.up1(f4), f3], dim=1)  # (B, 2*c3, H/16, W/16)
        x = torch.cat([self.up2(x), f2], dim=1)  # (B, 2*c2, H/8, W/8)
        x = torch.cat([self.up3(x), f1], dim=1)  # (B, 2*c1, H/4, W/4)
        x = torch.cat([self.up4(x), stem], dim=1)  # (B, 2*c0, H/2, W/2)
        x = self.up5(x)  # (B, c0/2, H, W)
        return sketch_outputs(self.normals_head(x), self.depth_head(x), self.silhouette_head(x), f4, f3)


# Decoder widths of LiteSketchNet at strides 16, 8, 4, 2, 1 (before each skip is concatenated).
LITE_DECODER = (96, 64, 48, 32, 16)


class LiteSketchNet(nn.Module):
    """SketchNet's contract on EfficientNet-Lite0 with resize-conv up-sampling and one merged head."""

    def __init__(self, in_channels: int = 3, pretrained: bool = True):
        super().__init__()
        self.encoder = Lite0Encoder(in_channels)
        if pretrained:
            load_lite0_weights(self.encoder)
        skips = self.encoder.channels[:4][::-1]  # 112, 40, 24, 16 at strides 16, 8, 4, 2
        ups, in_ch = [], self.encoder.channels[4]
        for out_ch, skip in zip(LITE_DECODER, (*skips, 0)):
            ups.append(ResizeUp2d(in_ch, out_ch))
            in_ch = out_ch + skip
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(in_ch, 5, 3, padding=1)  # normals (3), depth (1), silhouette logits (1)

    def forward(self, rgb: torch.Tensor) -> Dict[str, torch.Tensor]:
        """`rgb` (B, 3, H, W), normalised float, H and W multiples of 32; outputs as SketchNet's."""
        *skips, x = self.encoder(rgb)  # strides 2, 4, 8, 16 and 32
        deepest = x
        for up, skip in zip(self.ups, [*skips[::-1], None]):
            x = up(x)
            x = x if skip is None else torch.cat([x, skip], dim=1)
        out = self.head(x)  # (B, 5, H, W)
        return sketch_outputs(out[:, :3], out[:, 3:4], out[:, 4:5], deepest, skips[-1])
