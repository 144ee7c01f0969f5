"""The pixel work of the batched view pipeline: one view position of a whole batch at once, each sample with its own
parameters (drawn by :mod:`sslcore.data.batched`).

Crops are ``torch.nn.functional.grid_sample`` where a crop is enlarged (the recipe's interpolation) and
``torchvision.ops.roi_align`` where it is shrunk (area-averaged); the colour operations are ``kornia.enhance``'s functions
with PIL's conventions, which take one factor per sample (multiplicative brightness, contrast and saturation blended
with the grayscale mean and image as PIL does) and :func:`hue_shift` (kornia's ``adjust_hue`` in a third of the
time); the blur is ``kornia.filters.gaussian_blur2d``
with one sigma per sample. Images are float (B, 3, H, W) in [0, 1]; every operation but the crop writes into the
images it is given (the batch's own views) and returns them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from kornia.color import rgb_to_grayscale
from kornia.enhance import (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    adjust_saturation_with_gray_subtraction,
)
from kornia.filters import gaussian_blur2d
from torch.nn.functional import grid_sample
from torchvision.ops import roi_align

#: PIL's solarize threshold (128 of 255), on [0, 1] pixels.
SOLARIZE_THRESHOLD = 128 / 255


def resized_crops(
    images: torch.Tensor, source: torch.Tensor, boxes: torch.Tensor, size: int, interpolation: str
) -> torch.Tensor:
    """Crop ``boxes[i]`` (top, left, height, width) of ``images[source[i]]`` and resize it to ``size`` x ``size``, as
    PIL does (one crop per row of ``boxes``; several may come from one image).

    A box no larger than ``size`` is enlarged as PIL enlarges: ``interpolation`` (bilinear, or bicubic with torch's
    a = -0.75 where PIL's is -0.5) at the pixel centres of the output, reading the box's own edge beyond it
    (``grid_sample`` at clamped coordinates). A larger box is shrunk by ``roi_align``: the average of
    ``ceil(box side / size)``^2 bilinear samples per output pixel, an area filter as PIL's antialiased reduction
    (not PIL's bicubic weights). Pixel centres are at half-integers in both, as in PIL and torchvision.
    """
    boxes = boxes.to(images.dtype)
    enlarged = (boxes[:, 2] <= size) & (boxes[:, 3] <= size)
    if bool(enlarged.all()):  # CIFAR-sized sources: every crop
        return _enlarged(images.index_select(0, source), boxes, size, interpolation)
    out = torch.empty(len(boxes), images.shape[1], size, size, dtype=images.dtype, device=images.device)
    up, down = torch.nonzero(enlarged).flatten(), torch.nonzero(~enlarged).flatten()
    if len(up):  # grid_sample takes one image per crop: copy only the enlarged crops' images
        out[up] = _enlarged(images.index_select(0, source[up]), boxes[up], size, interpolation)
    if len(down):
        top, left, height, width = boxes[down].unbind(1)
        rois = torch.stack([source[down].to(images.dtype), left, top, left + width, top + height], dim=1)
        out[down] = roi_align(images, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return out


def _enlarged(images: torch.Tensor, boxes: torch.Tensor, size: int, interpolation: str) -> torch.Tensor:
    top, left, height, width = (column[:, None] for column in boxes.unbind(1))
    steps = (torch.arange(size, device=images.device, dtype=images.dtype) + 0.5) / size
    x = torch.minimum(torch.maximum(left + steps * width - 0.5, left), left + width - 1)
    y = torch.minimum(torch.maximum(top + steps * height - 0.5, top), top + height - 1)
    gx = (2 * x + 1) / images.shape[-1] - 1  # grid_sample's coordinates (align_corners=False)
    gy = (2 * y + 1) / images.shape[-2] - 1
    grid = torch.stack([gx[:, None, :].expand(-1, size, -1), gy[:, :, None].expand(-1, -1, size)], dim=-1)
    return grid_sample(images, grid, mode=interpolation, padding_mode="border", align_corners=False)


def flip(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images where ``mask`` is true."""
    rows = torch.nonzero(mask).flatten()
    images[rows] = images.index_select(0, rows).flip(-1)
    return images


def grayscale(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replace the images where ``mask`` is true by their luma (ITU-R 601-2, as PIL's ``convert("L")``), 3 channels."""
    rows = torch.nonzero(mask).flatten()
    images[rows] = rgb_to_grayscale(images.index_select(0, rows)).expand(-1, 3, -1, -1)
    return images


def _truncated(blend: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable:
    """``blend`` followed by PIL's rounding: ``Image.blend``, under PIL's brightness, contrast and saturation,
    truncates to whole grey levels (on average half a level darker per operation, 1.5 levels after three)."""

    def adjust(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        return blend(images, factor).mul_(255.0).add_(1e-3).floor_().div_(255.0)

    return adjust


def hue_shift(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Turn each image's hue by ``shift`` (a fraction of the colour circle, torchvision's convention), keeping HSV
    value and saturation: the same result as ``kornia.enhance.adjust_hue`` (to 2e-6) or torchvision's RGB -> HSV ->
    RGB, in a third of their time (on one CPU thread, 32 px: 14 ms instead of 47 ms for 256 images), because only
    the hue is converted: channel n is ``max - chroma * clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6 hue) mod 6``."""
    r, g, b = images.unbind(1)
    high, low = images.amax(1), images.amin(1)
    chroma = high - low
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(high == r, (g - b) / safe, torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = (hue + 6 * shift.view(-1, 1, 1)).remainder_(6)
    k = (torch.tensor([5.0, 3.0, 1.0], device=images.device).view(1, 3, 1, 1) + hue[:, None]).remainder_(6)
    return high[:, None] - chroma[:, None] * torch.minimum(k, 4 - k).clamp_(0, 1)


#: The four jitter operations in torchvision's order (brightness, contrast, saturation, hue).
JITTER_OPS = (
    _truncated(adjust_brightness_accumulative),
    _truncated(adjust_contrast_with_mean_subtraction),
    _truncated(adjust_saturation_with_gray_subtraction),
    hue_shift,
)


def color_jitter(
    images: torch.Tensor, mask: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, strengths: tuple[float, ...]
) -> torch.Tensor:
    """Colour jitter where ``mask`` is true: operation ``order[i, k]`` is the k-th applied to sample i, with
    ``factors[i, op]`` (brightness, contrast, saturation factors, hue shift); operations of zero strength are skipped,
    as :class:`sslcore.data.augment.RandomColorJitter` does. Each (position, operation) pair runs once on the samples
    that apply that operation at that position."""
    out = images
    for position in range(4):
        for op, adjust in enumerate(JITTER_OPS):
            if strengths[op] == 0:
                continue
            rows = torch.nonzero(mask & (order[:, position] == op)).flatten()
            if len(rows):
                out[rows] = adjust(out.index_select(0, rows), factors[rows, op])
    return out


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """Blur the images whose ``sigma`` is positive with a Gaussian of that standard deviation (a kernel of 4
    ``sigma_max`` each side, edges replicated as PIL's box-blur approximation does)."""
    rows = torch.nonzero(sigma > 0).flatten()
    side = 2 * math.ceil(4 * sigma_max) + 1
    if len(rows):
        images[rows] = gaussian_blur2d(
            images.index_select(0, rows), side, sigma[rows, None].expand(-1, 2), border_type="replicate"
        )
    return images


def solarize(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Invert the pixels >= 128 / 255 of the images where ``mask`` is true (PIL's ``ImageOps.solarize(128)``)."""
    rows = torch.nonzero(mask).flatten()
    chosen = images.index_select(0, rows)
    images[rows] = torch.where(chosen >= SOLARIZE_THRESHOLD, 1 - chosen, chosen)
    return images
