"""Images to an augmented grid of overlapping patches, and the BatchNorm -> layer-norm surgery of CPC v2.

CPC v1 (van den Oord et al. 2018, sec. 3.3): a 256 px image is cut into a 7x7 grid of 64 px patches with 32 px
overlap. CPC v2 (Hénaff et al. 2020, sec. 4.1 "patch-based augmentation") augments every patch on its own; here a
random resized crop and a horizontal flip (one batched ``grid_sample``) and colour dropping (keep one of the three
channels at random, zero the others: the normalised dataset mean). Random numbers come from torch's generator,
which the engine seeds from (seed, step, rank), so a step's augmentation is reproduced exactly on resume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslcore.errors import SslcoreError


class PatchGrid(nn.Module):
    """``(B, C, S, S)`` images to ``(B * grid * grid, C, patch, patch)`` patches in row-major grid order, each patch
    augmented independently in training mode (``min_scale``: crop side fraction; ``flip``, ``color_drop``: their
    probabilities per patch)."""

    def __init__(self, grid: int, patch_size: int, stride: int, *, min_scale: float, flip: float,
                 color_drop: float) -> None:
        super().__init__()
        self.grid, self.patch_size, self.stride = grid, patch_size, stride
        self.min_scale, self.flip, self.color_drop = min_scale, flip, color_drop

    @property
    def image_size(self) -> int:
        return self.patch_size + (self.grid - 1) * self.stride

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise SslcoreError(
                f"a {self.grid}x{self.grid} grid of {self.patch_size} px patches with stride {self.stride} needs "
                f"{self.image_size} px images, got {tuple(images.shape[-2:])}",
                hint=f"set the view size to {self.image_size}",
            )
        channels = images.shape[1]
        patches = images.unfold(2, self.patch_size, self.stride).unfold(3, self.patch_size, self.stride)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels, self.patch_size, self.patch_size)
        if not self.training:
            return patches
        if self.min_scale < 1 or self.flip > 0:
            patches = self._crop_and_flip(patches)
        if self.color_drop > 0:
            patches = self._drop_colors(patches)
        return patches

    def _crop_and_flip(self, patches: torch.Tensor) -> torch.Tensor:
        n, device = patches.shape[0], patches.device
        scale = self.min_scale + (1 - self.min_scale) * torch.rand(n, device=device)
        sign = torch.where(torch.rand(n, device=device) < self.flip, -1.0, 1.0)
        shift = (1 - scale)[:, None] * (2 * torch.rand(n, 2, device=device) - 1)
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = scale * sign, scale, shift
        grid = F.affine_grid(theta.to(patches.dtype), list(patches.shape), align_corners=False)
        return F.grid_sample(patches, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _drop_colors(self, patches: torch.Tensor) -> torch.Tensor:
        n, channels, device = patches.shape[0], patches.shape[1], patches.device
        keep = F.one_hot(torch.randint(channels, (n,), device=device), channels).to(patches.dtype)
        dropped = (torch.rand(n, device=device) < self.color_drop)[:, None]
        mask = torch.where(dropped, keep, torch.ones_like(keep))
        return patches * mask[:, :, None, None]

    def extra_repr(self) -> str:
        return (f"grid={self.grid}, patch_size={self.patch_size}, stride={self.stride}, min_scale={self.min_scale}, "
                f"flip={self.flip}, color_drop={self.color_drop}")
