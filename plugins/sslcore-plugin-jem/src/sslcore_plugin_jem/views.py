"""The training view of JEM and HDGE (wgrathwohl/JEM ``train_wrn_ebm.py`` ``get_data``, CIFAR): reflect-pad 4,
random 32 px crop, horizontal flip, normalise with mean = std = 0.5 (images in [-1, 1], the range of the replay
buffer's noise), then add Gaussian noise of standard deviation ``noise`` (``--sigma``, 0.03: "works but .1 is more
stable")."""

from __future__ import annotations

import attrs
import torch
from attrs import validators as v
from PIL import Image
from torchvision.transforms import functional as F

from sslcore.data.augment import MultiView, RandomHorizontalFlip, ToNormalizedTensor, ToRGB
from sslcore.errors import SslcoreError

HALF: tuple[float, ...] = (0.5, 0.5, 0.5)


@attrs.frozen(kw_only=True)
class PadCropViewsConfig:
    """``size``: crop side; ``padding``: reflect padding before the crop; ``flip``: random horizontal flip (off for
    SVHN in the official code); ``noise``: std of the Gaussian added to the normalised image; ``mean`` / ``std``:
    normalisation (the evaluator's ``transform`` must use the same); ``num_views``: views per image."""

    size: int = attrs.field(default=32, validator=v.gt(0))
    padding: int = attrs.field(default=4, validator=v.ge(0))
    flip: bool = True
    noise: float = attrs.field(default=0.03, validator=v.ge(0))
    mean: tuple[float, ...] = HALF
    std: tuple[float, ...] = HALF
    num_views: int = attrs.field(default=1, validator=v.gt(0))


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
