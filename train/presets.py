"""Named model sizes (plain config) and the factories that build every net from one.

`paper` is MarrNet/ShapeHD exactly; `edge` is the small default for small GPUs and CPUs
(provisional: to be tuned by measurement). `model_args(preset)` is what a checkpoint stores to
rebuild its nets (`preset_from_args` reads it back).

This module does not import torch at load time (the factories import the nets when called), so the
CLI can list presets without loading torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping

from recon.runtime.errors import InputError, ModelError

# What the 5-layer 3D decoders support (first kernel R/16); mirrors recon.train.voxel_net's, kept
# here so this module stays torch-free (a test checks they agree).
VOXEL_RESOLUTIONS = (32, 64, 128)

# Input standardisation for RGB in [0, 1]: ImageNet's per-channel statistics, which the ResNet-18
# encoder's torchvision weights expect (recon.train.resnet.load_torchvision_state_dict). Same for
# every preset; whatever feeds a trained net (or its export) must apply the same numbers.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


ARCHS = ("marrnet", "fast")
ENCODERS = ("resnet18", "lite0")


@dataclass(frozen=True)
class Preset:
    name: str  # key in PRESETS, stored in checkpoints
    image_size: int  # input RGB side in pixels (square); a multiple of 32, the encoder's stride
    voxel_res: int  # output voxel grid side R, one of 32 / 64 / 128
    encoder_width: float  # ResNet-18 channel multiplier of both 2D encoders (1.0: 64..512 channels)
    decoder_width: int  # base channels w of the VoxelNet 3D decoder: hidden layers 8w, 4w, 2w, w
    gan_width: int  # base channels of the 3D-GAN generator (as decoder_width) and critic (w..8w)
    latent_dim: int = 200  # shape code between encoder and 3D decoder, and the GAN's z (paper: 200)
    arch: str = "marrnet"  # "marrnet": the paper's layers; "fast": LiteSketchNet + FastVoxelNet (resize-conv)
    encoder: str = "resnet18"  # 2D encoder of the voxel net under "fast" ("resnet18" or "lite0"); the paper's: resnet18

    def __post_init__(self):
        problems = []
        if not isinstance(self.image_size, int) or self.image_size < 32 or self.image_size % 32:
            problems.append(f"image_size {self.image_size} is not a positive multiple of 32")
        if self.voxel_res not in VOXEL_RESOLUTIONS:
            problems.append(f"voxel_res {self.voxel_res} is not one of {VOXEL_RESOLUTIONS}")
        w = self.encoder_width
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
            problems.append(f"encoder_width {w!r} is not a number > 0")
        for field in ("decoder_width", "gan_width", "latent_dim"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{field} {v!r} is not an integer >= 1")
        if self.arch not in ARCHS:
            problems.append(f"arch {self.arch!r} is not one of {ARCHS}")
        if self.encoder not in ENCODERS or (self.arch == "marrnet" and self.encoder != "resnet18"):
            problems.append(f"encoder {self.encoder!r} is not one of {ENCODERS} (marrnet: resnet18 only)")
        if problems:
            raise InputError(f"preset {self.name!r}: " + "; ".join(problems))


PRESETS: Dict[str, Preset] = {
    # MarrNet / ShapeHD as published: 256 px, ResNet-18 at full width (512 x 8 x 8),
    # 128^3 voxels through 512, 256, 128, 64 channels; 3D-GAN at the same size.
    "paper": Preset(name="paper", image_size=256, voxel_res=128, encoder_width=1.0, decoder_width=64, gan_width=64),
    # Provisional default for small GPUs / CPUs: 128 px, half-width encoder, 32^3 voxels through
    # 128, 64, 32, 16 channels. To be tuned by measurement.
    "edge": Preset(name="edge", image_size=128, voxel_res=32, encoder_width=0.5, decoder_width=16, gan_width=16),
    # The shipped default since the 3D-stage rebuild (docs/results/stage3d.md): edge's sizes on faster
    # nets that keep thin parts: an ImageNet-pretrained EfficientNet-Lite0 sketch net with resize-conv
    # up-sampling and one merged head; a voxel net with a 4x4 spatial latent and a resize-conv 3D
    # decoder ending in sub-voxels (recon.train.sketch_net.LiteSketchNet, voxel_net.FastVoxelNet).
    # The voxel net's encoder is a ResNet-18 at width 0.5 from scratch: as good as a pretrained Lite0
    # on sketches at equal steps, and 1.5x faster to train (edge2-lite; docs/results/stage3d.md).
    "edge2": Preset(name="edge2", image_size=128, voxel_res=32, encoder_width=0.5, decoder_width=16, gan_width=16,
                    latent_dim=256, arch="fast", encoder="resnet18"),
    "edge2-lite": Preset(name="edge2-lite", image_size=128, voxel_res=32, encoder_width=0.5, decoder_width=16,
                         gan_width=16, latent_dim=256, arch="fast", encoder="lite0"),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}") from None


def model_args(preset: Preset) -> Dict[str, Any]:
    """JSON-able dict of every field: `preset_from_args(model_args(p)) == p`."""
    return dataclasses.asdict(preset)


def preset_from_args(args: Mapping[str, Any]) -> Preset:
    """Rebuild a Preset from `model_args` output (e.g. read from a checkpoint); ModelError if it does not fit."""
    fields = {f.name for f in dataclasses.fields(Preset)}
    unknown = sorted(set(args) - fields)
    if unknown:
        raise ModelError(f"model args have unknown fields {unknown}; expected {sorted(fields)}")
    try:
        return Preset(**args)
    except (TypeError, InputError) as exc:
        raise ModelError(f"model args do not describe a valid preset: {exc}") from None


def build_sketch_net(preset: Preset):
    from recon.train.sketch_net import LiteSketchNet, SketchNet

    return LiteSketchNet() if preset.arch == "fast" else SketchNet(width=preset.encoder_width)


def build_voxel_net(preset: Preset, in_channels: int = 5):
    """in_channels 5: sketch -> voxels (MarrNet); 3: the direct RGB -> voxels baseline."""
    from recon.train.voxel_net import FastVoxelNet, VoxelNet

    if preset.arch == "fast":
        return FastVoxelNet(in_channels=in_channels, voxel_res=preset.voxel_res, encoder=preset.encoder,
                            encoder_width=preset.encoder_width, decoder_width=preset.decoder_width,
                            latent_dim=preset.latent_dim)
    return VoxelNet(
        in_channels=in_channels,
        voxel_res=preset.voxel_res,
        encoder_width=preset.encoder_width,
        decoder_width=preset.decoder_width,
        latent_dim=preset.latent_dim,
    )


def build_generator(preset: Preset):
    from recon.train.shape_gan import Generator

    return Generator(voxel_res=preset.voxel_res, width=preset.gan_width, latent_dim=preset.latent_dim)


def build_critic(preset: Preset):
    from recon.train.shape_gan import Critic

    return Critic(voxel_res=preset.voxel_res, width=preset.gan_width)
