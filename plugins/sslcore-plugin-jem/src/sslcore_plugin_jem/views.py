"""The training view of JEM and HDGE (wgrathwohl/JEM ``train_wrn_ebm.py`` ``get_data``, CIFAR): reflect-pad 4,
random 32 px crop, horizontal flip, normalise with mean = std = 0.5 (images in [-1, 1], the range of the replay
buffer's noise), then add Gaussian noise of standard deviation ``noise`` (``--sigma``, 0.03: "works but .1 is more
stable")."""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import functional as F

from sslcore.data.augment import MultiView, RandomHorizontalFlip, ToNormalizedTensor, ToRGB
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
        if config.padding:
            image = F.pad(image, config.padding, padding_mode="reflect")
        width, height = image.size
        if width < config.size or height < config.size:
            raise SslcoreError(
                f"cannot crop {config.size} px from an image of {width}x{height} after padding {config.padding}",
                where="[views]",
                hint="lower [views] size, raise padding, or use larger images",
            )
        top = int(torch.randint(0, height - config.size + 1, ()).item())
        left = int(torch.randint(0, width - config.size + 1, ()).item())
        image = image.crop((left, top, left + config.size, top + config.size))
        if self.flip is not None:
            image = self.flip(image)
        tensor = self.to_tensor(image)
        return tensor + config.noise * torch.randn_like(tensor) if config.noise else tensor

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def build_padcrop(config: PadCropViewsConfig) -> MultiView:
    """Reflect-pad, random crop, flip, normalise to [-1, 1], add Gaussian noise (JEM's CIFAR training view)."""
    return MultiView([PadCropView(config)] * config.num_views)
