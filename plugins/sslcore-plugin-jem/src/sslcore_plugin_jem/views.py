"""The training view of JEM and HDGE (wgrathwohl/JEM ``train_wrn_ebm.py`` ``get_data``, CIFAR): reflect-pad 4,
random 32 px crop, horizontal flip, normalise with mean = std = 0.5 (images in [-1, 1], the range of the replay
buffer's noise), then add Gaussian noise of standard deviation ``noise`` (``--sigma``, 0.03: "works but .1 is more
stable").

Two pipelines (docs/views.md): :class:`PadCropView` per image with PIL, the reference, and :class:`BatchedPadCrop`,
which draws the same parameters and noise per sample and makes the views of a whole batch by indexing.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import functional as F

from sslcore.data.augment import MultiView, RandomHorizontalFlip, ToNormalizedTensor, ToRGB, coin, rgb_pixels
from sslcore.data.batched import BatchTransform, ViewDraw
from sslcore.data.pixels import to_rgb
from sslcore.errors import SslcoreError
from sslcore_plugin_jem.config import PadCropViewsConfig


class PadCropView:
    """One view; all randomness from torch's global generator (seeded per sample by the engine)."""

    def __init__(self, config: PadCropViewsConfig) -> None:
        self.config = config
        self.flip = RandomHorizontalFlip() if config.flip else None
        self.to_tensor = ToNormalizedTensor(config.mean, config.std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        config = self.config
        image = ToRGB()(image)
        _check_crop(config, *image.size)
        if config.padding:
            image = F.pad(image, config.padding, padding_mode="reflect")
        width, height = image.size
        top = int(torch.randint(0, height - config.size + 1, ()).item())
        left = int(torch.randint(0, width - config.size + 1, ()).item())
        image = image.crop((left, top, left + config.size, top + config.size))
        if self.flip is not None:
            image = self.flip(image)
        tensor = self.to_tensor(image)
        return tensor + config.noise * torch.randn_like(tensor) if config.noise else tensor

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def _check_crop(config: PadCropViewsConfig, width: int, height: int) -> None:
    if width + 2 * config.padding < config.size or height + 2 * config.padding < config.size:
        raise SslcoreError(
            f"cannot crop {config.size} px from an image of {width}x{height} after padding {config.padding}",
            where="[views]",
            hint="lower [views] size, raise padding, or use larger images",
        )


class BatchedPadCrop(BatchTransform):
    """:class:`PadCropView`'s batched pipeline. Per sample, the same draws in the same order (top, left, flip, then
    the noise) and so the same views for one seed; per batch, every crop is one gather from the unpadded pixels
    (a reflected index stands for the padding), then flip, normalisation and noise as tensor operations.

    A parameter row is ``[width, height, top, left, flip]``, then the noise (3 x size x size) when there is any."""

    def __init__(self, config: PadCropViewsConfig) -> None:
        self.config = config

    def __len__(self) -> int:
        return self.config.num_views

    def __call__(self, image: Image.Image) -> ViewDraw:
        config, image = self.config, to_rgb(image)
        width, height = image.size
        _check_crop(config, width, height)
        if config.padding >= min(width, height):
            raise SslcoreError(
                f"the batched padcrop reflects at most one image side: padding {config.padding} needs images larger "
                f"than {config.padding} px, got {width}x{height}",
                where="[views]", hint='lower [views] padding or set [views] pipeline = "pil"',
            )
        noise_size = 3 * config.size * config.size if config.noise else 0
        rows = torch.zeros(config.num_views, 5 + noise_size)
        for row in rows:
            top = int(torch.randint(0, height + 2 * config.padding - config.size + 1, ()).item())
            left = int(torch.randint(0, width + 2 * config.padding - config.size + 1, ()).item())
            flip = coin(0.5) if config.flip else False
            row[:5] = torch.tensor([width, height, top, left, flip])
            if config.noise:
                row[5:] = torch.randn(noise_size)
        return ViewDraw(rgb_pixels(image), rows)

    def apply(self, pixels: torch.Tensor, params: torch.Tensor) -> list[torch.Tensor]:
        config, size = self.config, self.config.size
        batch = torch.arange(pixels.shape[0], device=pixels.device).view(-1, 1, 1)
        offsets = torch.arange(size, device=pixels.device)
        std = torch.tensor(config.std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
        scale = 1.0 / (255.0 * std)  # as ToNormalizedTensor computes it, so both pipelines round alike
        shift = -torch.tensor(config.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1) / std
        views = []
        for row in params.unbind(1):
            width, height, top, left = (row[:, i].long().view(-1, 1) for i in range(4))
            ys = _reflect(top + offsets - config.padding, height)
            xs = _reflect(left + offsets - config.padding, width)
            xs = torch.where(row[:, 4:5] > 0, xs.flip(1), xs)
            crops = pixels[batch, :, ys.unsqueeze(2), xs.unsqueeze(1)].permute(0, 3, 1, 2)  # (B, 3, size, size)
            view = crops.float().mul_(scale).add_(shift)
            if config.noise:
                view.add_(config.noise * row[:, 5:].view(-1, 3, size, size))
            views.append(view)
        return views

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def _reflect(index: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Positions in a reflect-padded axis -> positions in the image (NumPy's and PIL's ``reflect``: the edge pixel is
    not repeated), for paddings shorter than the axis."""
    index = index.abs()
    return torch.where(index >= length, 2 * (length - 1) - index, index)


def build_padcrop(config: PadCropViewsConfig) -> MultiView | BatchedPadCrop:
    """Reflect-pad, random crop, flip, normalise to [-1, 1], add Gaussian noise (JEM's CIFAR training view)."""
    if config.pipeline == "batched":
        return BatchedPadCrop(config)
    return MultiView([PadCropView(config)] * config.num_views)
