"""3D-GAN shape prior (ShapeHD): a voxel generator and a WGAN-GP critic.

Generator: z (B, 200) -> `VoxelDecoder` (the same 5 ConvTranspose3d layers, BN + ReLU, as
VoxelNet's decoder, so a generator's weights load into a VoxelNet decoder and back) -> sigmoid ->
occupancy (B, R, R, R) in [0, 1].
Critic: the mirror image, 5 Conv3d layers: four kernel-4 / stride-2 / padding-1 layers halve R to
R/16 with LeakyReLU(0.2), the fifth (kernel R/16, no padding) reduces that to one number per sample.
No batch norm: WGAN-GP penalises the gradient per sample, which batch statistics would couple;
the output is linear (a Wasserstein critic, not a probability).
"""

from __future__ import annotations

import torch
from torch import nn

from recon.train.voxel_net import VoxelDecoder, check_voxel_res


class Generator(nn.Module):
    """z (B, latent_dim) -> occupancy probabilities (B, R, R, R)."""

    def __init__(self, voxel_res: int = 128, width: int = 64, latent_dim: int = 200):
        super().__init__()
        self.latent_dim = latent_dim
        self.decoder = VoxelDecoder(voxel_res=voxel_res, width=width, latent_dim=latent_dim)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output (B, R, R, R), for numerically stable losses."""
        return self.decoder(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))  # (B, R, R, R) in [0, 1]


class Critic(nn.Module):
    """Voxels (B, R, R, R) in [0, 1] -> score (B,). Hidden channels w, 2w, 4w, 8w (3D-GAN: w = 64)."""

    def __init__(self, voxel_res: int = 128, width: int = 64):
        super().__init__()
        check_voxel_res(voxel_res)
        if width < 1:
            raise ValueError(f"Critic: need width >= 1, got {width}")
        self.voxel_res = voxel_res
        chans = [1, width, 2 * width, 4 * width, 8 * width]
        layers = []
        for i in range(4):
            layers += [nn.Conv3d(chans[i], chans[i + 1], 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv3d(8 * width, 1, voxel_res // 16))  # (R/16)^3 -> 1^3
        self.layers = nn.Sequential(*layers)

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        x = voxels.unsqueeze(1)  # (B, 1, R, R, R)
        return self.layers(x).flatten(1).squeeze(1)  # (B,)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, lambda_gp: float = 10.0) -> torch.Tensor:
    """WGAN-GP: lambda * E[(||grad_x critic(x)||_2 - 1)^2] at x = eps*real + (1-eps)*fake, eps ~ U(0,1) per sample.

    `real` and `fake` are treated as constants (detached): the penalty trains the critic only.
    The graph is kept (create_graph) so the penalty can be back-propagated into the critic.
    """
    real, fake = real.detach(), fake.detach()
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), dtype=real.dtype, device=real.device)  # (B, 1, 1, 1)
    x = (eps * real + (1 - eps) * fake).requires_grad_(True)  # (B, R, R, R)
    score = critic(x)  # (B,)
    (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)  # per-sample grads: samples are independent
    norm = grad.flatten(1).norm(2, dim=1)  # (B,)
    return lambda_gp * ((norm - 1) ** 2).mean()
