"""VoxelNet: 2.5D sketch -> voxel logits, MarrNet's second stage (and the direct RGB baseline).

Input: the sketch (B, 5, H, W) = normals (3) + depth (1) + silhouette (1), background zeroed by
the caller; with `in_channels=3` the same net is the direct RGB -> voxels baseline.
Encoder: `ResNetEncoder` -> global average pool -> linear to a 200-d latent.
Decoder (`VoxelDecoder`, shared with the 3D-GAN generator so weights and keys are interchangeable):
exactly 5 ConvTranspose3d layers, the first 4 with BatchNorm3d + ReLU, the last giving 1-channel
logits. The latent is a (200, 1, 1, 1) volume; the first layer (kernel R/16, stride 1) grows it to
(R/16)^3 and four kernel-4 / stride-2 / padding-1 layers double it to R^3:
  R = 128 (paper): 8 -> 16 -> 32 -> 64 -> 128, channels 512, 256, 128, 64 at base width 64,
  R = 64 (3D-GAN): 4 -> 8 -> 16 -> 32 -> 64,
  R = 32:          2 -> 4 -> 8 -> 16 -> 32 (first kernel 2, so all three keep 5 layers).
Output: (B, R, R, R) logits indexed [x, y, z] (design.md); the training targets fix that order.

`FastVoxelNet` (the `edge2` preset) keeps the contract with a decoder that keeps thin parts: the
encoder's last map is pooled to 4 x 4, not to 1 x 1, so the latent still knows where things are in
the picture; the 3D decoder up-samples by nearest resize + 3x3x3 convolution (no ConvTranspose),
and its last layer predicts 2 x 2 x 2 sub-voxels per cell of the R/2 grid (a 3D pixel shuffle), so
the full-resolution grid costs one cheap convolution.
"""

from __future__ import annotations

import torch
from torch import nn

from recon.train.encoders import Lite0Encoder, load_lite0_weights
from recon.train.resnet import ResNetEncoder

VOXEL_RESOLUTIONS = (32, 64, 128)


def check_voxel_res(voxel_res: int) -> int:
    if voxel_res not in VOXEL_RESOLUTIONS:
        raise ValueError(f"voxel_res must be one of {VOXEL_RESOLUTIONS}, got {voxel_res}")
    return voxel_res


class VoxelDecoder(nn.Module):
    """Latent (B, latent_dim) -> logits (B, R, R, R) through 5 ConvTranspose3d layers.

    Hidden channels are 8w, 4w, 2w, w for base width w (paper: w = 64 -> 512, 256, 128, 64).
    """

    def __init__(self, voxel_res: int = 128, width: int = 64, latent_dim: int = 200):
        super().__init__()
        check_voxel_res(voxel_res)
        if width < 1 or latent_dim < 1:
            raise ValueError(f"VoxelDecoder: need width >= 1 and latent_dim >= 1, got {width}, {latent_dim}")
        self.voxel_res, self.width, self.latent_dim = voxel_res, width, latent_dim
        chans = [latent_dim, 8 * width, 4 * width, 2 * width, width]
        layers = []
        for i in range(4):
            # Layer 0 expands the 1^3 latent to (R/16)^3; the rest double the side.
            conv = (
                nn.ConvTranspose3d(chans[i], chans[i + 1], voxel_res // 16, stride=1, bias=False)
                if i == 0
                else nn.ConvTranspose3d(chans[i], chans[i + 1], 4, stride=2, padding=1, bias=False)
            )
            layers += [conv, nn.BatchNorm3d(chans[i + 1]), nn.ReLU(inplace=True)]
        # Last layer: logits, with a bias (no BN after it to absorb one).
        layers.append(nn.ConvTranspose3d(width, 1, 4, stride=2, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = latent.reshape(latent.shape[0], self.latent_dim, 1, 1, 1)  # (B, latent, 1, 1, 1)
        return self.layers(x).squeeze(1)  # (B, R, R, R)


def zero_background(sketch: torch.Tensor) -> torch.Tensor:
    """(B, 5, H, W) normals, depth, silhouette -> the same with background pixels zeroed and the
    silhouette binarised at 0.5 (ground-truth masks and predicted probabilities alike)."""
    keep = (sketch[:, 4:5] > 0.5).to(sketch.dtype)  # (B, 1, H, W)
    return torch.cat([sketch[:, :4] * keep, keep], dim=1)


class VoxelNet(nn.Module):
    """Sketch (B, in_channels, H, W) -> voxel logits (B, R, R, R); `encode`/`decode` expose the latent."""

    def __init__(
        self,
        in_channels: int = 5,
        voxel_res: int = 128,
        encoder_width: float = 1.0,
        decoder_width: int = 64,
        latent_dim: int = 200,
    ):
        super().__init__()
        self.encoder = ResNetEncoder(in_channels=in_channels, width=encoder_width)
        self.pool = nn.AdaptiveAvgPool2d(1)  # global: the latent does not depend on the input size
        self.fc = nn.Linear(self.encoder.channels[-1], latent_dim)
        self.decoder = VoxelDecoder(voxel_res=voxel_res, width=decoder_width, latent_dim=latent_dim)
        # A 2.5D sketch input (normals, depth, silhouette) gets its background zeroed inside the
        # net, so training, evaluation and the exported ONNX graph all do it the same way.
        self.masks_background = in_channels == 5

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> latent (B, latent_dim)."""
        if self.masks_background:
            x = zero_background(x)
        f4 = self.encoder(x)[-1]  # (B, C4, H/32, W/32)
        return self.fc(self.pool(f4).flatten(1))  # (B, latent_dim)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent (B, latent_dim) -> logits (B, R, R, R)."""
        return self.decoder(latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))  # (B, R, R, R)


class ResizeUp3d(nn.Module):
    """x2 up-sampling of a volume: nearest resize, 3x3x3 conv + BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv3d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))))


def subvoxel_shuffle(x: torch.Tensor) -> torch.Tensor:
    """(B, 8, D, H, W) -> (B, 2D, 2H, 2W): channel 4i + 2j + k is the sub-voxel at offset (i, j, k)."""
    b, _, d, h, w = x.shape
    x = x.reshape(b, 2, 2, 2, d, h, w).permute(0, 4, 1, 5, 2, 6, 3)  # (B, D, 2, H, 2, W, 2)
    return x.reshape(b, 2 * d, 2 * h, 2 * w)


FAST_GRID = 4  # side of the first volume (and of the pooled 2D map)
SQUEEZED = 64  # channels of the pooled 2D map


class FastVoxelDecoder(nn.Module):
    """Latent (B, latent_dim) -> logits (B, R, R, R): a 4^3 volume of 8w channels, resize-conv up to
    R/2 halving the channels, then one conv to 8 sub-voxels per cell."""

    def __init__(self, voxel_res: int = 32, width: int = 16, latent_dim: int = 256):
        super().__init__()
        check_voxel_res(voxel_res)
        self.latent_dim, self.width = latent_dim, width
        self.fc = nn.Linear(latent_dim, 8 * width * FAST_GRID ** 3)
        self.bn = nn.BatchNorm3d(8 * width)
        ups, channels, side = [], 8 * width, FAST_GRID
        while side < voxel_res // 2:
            ups.append(ResizeUp3d(channels, channels // 2))
            channels, side = channels // 2, side * 2
        self.ups = nn.Sequential(*ups)
        self.to_subvoxels = nn.Conv3d(channels, 8, 3, padding=1)

    @torch.no_grad()
    def fold_batchnorm(self) -> None:
        """Fold the BatchNorm after the fully connected layer into it (eval statistics), for export:
        ONNX simplifiers fold BatchNorm into a preceding convolution, not across this reshape."""
        bn = self.bn
        if isinstance(bn, nn.Identity):
            return
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C,)
        shift = bn.bias - bn.running_mean * scale
        per_output = scale.repeat_interleave(FAST_GRID ** 3)  # fc outputs are (C, 4, 4, 4) flattened
        self.fc.weight.mul_(per_output[:, None])
        self.fc.bias.mul_(per_output).add_(shift.repeat_interleave(FAST_GRID ** 3))
        self.bn = nn.Identity()

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.fc(latent).reshape(latent.shape[0], 8 * self.width, FAST_GRID, FAST_GRID, FAST_GRID)
        x = self.ups(torch.relu(self.bn(x)))  # (B, C, R/2, R/2, R/2)
        return subvoxel_shuffle(self.to_subvoxels(x))  # (B, R, R, R)


class FastVoxelNet(nn.Module):
    """Sketch (B, in_channels, H, W) -> voxel logits (B, R, R, R), VoxelNet's contract (see module doc)."""

    def __init__(self, in_channels: int = 5, voxel_res: int = 32, encoder: str = "lite0", encoder_width: float = 0.5,
                 decoder_width: int = 16, latent_dim: int = 256, pretrained: bool = True):
        super().__init__()
        if encoder == "lite0":
            self.encoder = Lite0Encoder(in_channels)
            if pretrained:
                load_lite0_weights(self.encoder)
        else:
            self.encoder = ResNetEncoder(in_channels=in_channels, width=encoder_width)
        self.pool = nn.AdaptiveAvgPool2d(FAST_GRID)
        # A 1x1 squeeze before flattening keeps the fully connected layer (and the file) small.
        self.squeeze = nn.Sequential(nn.Conv2d(self.encoder.channels[-1], SQUEEZED, 1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(SQUEEZED * FAST_GRID ** 2, latent_dim)
        self.decoder = FastVoxelDecoder(voxel_res, decoder_width, latent_dim)
        self.masks_background = in_channels == 5

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.masks_background:
            x = zero_background(x)
        f4 = self.encoder(x)[-1]  # (B, C4, H/32, W/32)
        return torch.relu(self.fc(self.squeeze(self.pool(f4)).flatten(1)))  # (B, latent_dim)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))  # (B, R, R, R)
