"""Building blocks of the view pipelines: fast PIL augmentations, one view, several views.

The pixel work is torchvision's own PIL functions (``torchvision.transforms.functional``) or PIL itself, with
the parameter distributions of torchvision's transform classes. The classes are re-written here only to draw
their random parameters with one torch call each: torchvision's classes spend 0.2-0.6 ms per call on small
tensor operations, which is most of the cost of a 32 px view (measured: 3.2 ms -> 0.6 ms per view).

All randomness comes from torch's global generator, so ``torch.manual_seed`` makes views reproducible, and
DataLoader workers, which torch seeds one by one, draw different augmentations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import attrs
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision.transforms import Compose
from torchvision.transforms import functional as F

from sslcore.data.pixels import to_rgb

#: Images up to this side are "small" (CIFAR, Tiny-ImageNet): their defaults leave out blur.
SMALL_IMAGE_MAX = 64

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def is_small(size: int) -> bool:
    return size <= SMALL_IMAGE_MAX


#: Standard deviation range of the Gaussian blur (SimCLR appendix A, MoCo v2 ``loader.py``, BYOL table 6, DINO).
BLUR_SIGMA = (0.1, 2.0)
#: Aspect-ratio range of every random resized crop (torchvision's default, all official codes).
CROP_RATIO = (3 / 4, 4 / 3)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


def coin(p: float) -> bool:
    """True with probability ``p`` (one draw of torch's global generator, whatever ``p``)."""
    return torch.rand(()).item() < p


def draw_jitter(strengths: Sequence[float], p: float) -> tuple[list[float], list[int]] | None:
    """:class:`RandomColorJitter`'s parameters, or None when it is not applied: the brightness, contrast and
    saturation factors ~ U[max(0, 1 - x), 1 + x], the hue shift ~ U[-x, x], and the order of the four operations."""
    if not coin(p):
        return None
    draws = torch.rand(4).tolist()
    factors = [max(0.0, 1 - x) + (1 + x - max(0.0, 1 - x)) * u for x, u in zip(strengths[:3], draws[:3])]
    return [*factors, strengths[3] * (2 * draws[3] - 1)], torch.randperm(4).tolist()


def draw_blur(p: float, sigma: tuple[float, float]) -> float | None:
    """:class:`RandomGaussianBlur`'s standard deviation, or None when it is not applied."""
    return _uniform(*sigma) if coin(p) else None


class ToRGB:
    """Convert any image PIL reads to 8-bit RGB, 16-bit and float ones rescaled (:func:`sslcore.data.pixels.to_rgb`;
    a no-op on RGB images)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return to_rgb(image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def sample_crop_box(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop covering ``scale`` of the area with aspect ``ratio``.

    torchvision's ``RandomResizedCrop.get_params`` (the Inception crop): 10 tries, then the whole image
    clipped to the aspect range.
    """
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u_area, u_ratio, u_top, u_left = torch.rand(4).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u_area)
        aspect = math.exp(log_low + (log_high - log_low) * u_ratio)
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(u_top * (height - h + 1)), int(u_left * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class RandomResizedCrop:
    """Crop a random box (:func:`sample_crop_box`) and resize it to ``size`` x ``size``."""

    def __init__(
        self, size: int, scale: tuple[float, float], interpolation: str, ratio: tuple[float, float] = CROP_RATIO
    ) -> None:
        self.size = size
        self.scale = scale
        self.ratio = ratio
        self.interpolation = interpolation

    def __call__(self, image: Image.Image) -> Image.Image:
        top, left, h, w = sample_crop_box(image.width, image.height, self.scale, self.ratio)
        crop = image.crop((left, top, left + w, top + h))
        return crop.resize((self.size, self.size), _RESAMPLE[self.interpolation])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, scale={self.scale}, interpolation={self.interpolation})"


class RandomHorizontalFlip:
    """Mirror left-right with probability 1/2."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if coin(0.5) else image

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RandomColorJitter:
    """With probability ``p``: brightness, contrast, saturation (factors ~ U[max(0, 1 - x), 1 + x]) and hue
    (shift ~ U[-x, x]) in random order, as ``torchvision.transforms.ColorJitter``; zero strengths are skipped."""

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float, p: float) -> None:
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue jitter must be in [0, 0.5], got {hue}")
        self.strengths = (brightness, contrast, saturation, hue)
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        drawn = draw_jitter(self.strengths, self.p)
        if drawn is None:
            return image
        factors, order = drawn
        adjust = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
        for op in order:
            if self.strengths[op] != 0:
                image = adjust[op](image, factors[op])
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(strengths={self.strengths}, p={self.p})"


class RandomGrayscale:
    """With probability ``p``, replace the image by its luma (ITU-R 601-2), kept as 3 channels."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert("L").convert("RGB") if coin(self.p) else image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class RandomGaussianBlur:
    """With probability ``p``, blur with PIL's Gaussian filter of standard deviation ~ U(sigma_min, sigma_max).

    As the official MoCo v2 (``moco/loader.py``) and DINO (``utils.GaussianBlur``) code; SwAV applies OpenCV's
    23 px kernel, SimCLR's TF code a kernel of 10% of the side (23 px at 224): both are wider than 3 sigma for
    every sigma <= 2, so PIL's untruncated filter is the same operation.
    """

    def __init__(self, p: float, sigma: tuple[float, float] = BLUR_SIGMA) -> None:
        self.p = p
        self.sigma = sigma

    def __call__(self, image: Image.Image) -> Image.Image:
        sigma = draw_blur(self.p, self.sigma)
        return image if sigma is None else image.filter(ImageFilter.GaussianBlur(radius=sigma))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, sigma={self.sigma})"


class RandomSolarize:
    """With probability ``p``, invert every pixel value >= 128 (BYOL's threshold 0.5; DINO's ``Solarization``)."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        return ImageOps.solarize(image, threshold=128) if coin(self.p) else image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


def rgb_pixels(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image's pixels as a uint8 tensor (3, H, W) (a view of one copy of its bytes)."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode} (convert with ToRGB first)")
    width, height = image.size
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(height, width, 3).permute(2, 0, 1)


class ToNormalizedTensor:
    """RGB PIL image -> float32 tensor (3, H, W), ``(pixel / 255 - mean) / std`` per channel.

    Equals ``ToTensor()`` then ``Normalize(mean, std)``, in three in-place tensor operations (5x faster at
    224 px than the two transforms).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(mean)
        self.std = tuple(std)
        std_ = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self._scale = 1.0 / (255.0 * std_)
        self._shift = -torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) / std_

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = rgb_pixels(image)
        out = torch.empty(pixels.shape)
        out.copy_(pixels)
        return out.mul_(self._scale).add_(self._shift)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


@attrs.frozen(kw_only=True)
class ViewSpec:
    """One view's augmentation, in the order the official code applies it:

    random resized crop -> horizontal flip -> colour jitter (probability ``jitter_prob``, its four operations
    in random order) -> grayscale (``grayscale_first`` puts it before the jitter, as MoCo v1 and InstDisc do)
    -> Gaussian blur -> solarization -> normalized tensor. ``jitter`` is (brightness, contrast, saturation,
    hue) in torchvision's multiplicative convention, as in all PyTorch reference implementations.
    """

    size: int
    scale: tuple[float, ...]
    interpolation: str
    jitter: tuple[float, float, float, float]
    jitter_prob: float
    grayscale_prob: float
    blur_prob: float
    solarize_prob: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    grayscale_first: bool = False

    def build(self) -> Compose:
        jitter = RandomColorJitter(*self.jitter, p=self.jitter_prob)
        gray = RandomGrayscale(self.grayscale_prob)
        steps: list[Callable] = [
            ToRGB(),
            RandomResizedCrop(self.size, (self.scale[0], self.scale[1]), self.interpolation),
            RandomHorizontalFlip(),
            *([gray, jitter] if self.grayscale_first else [jitter, gray]),
        ]
        if self.blur_prob > 0:
            steps.append(RandomGaussianBlur(self.blur_prob))
        if self.solarize_prob > 0:
            steps.append(RandomSolarize(self.solarize_prob))
        return Compose([*steps, ToNormalizedTensor(self.mean, self.std)])


class CenterView:
    """Deterministic evaluation view: resize the short side to ``resize`` and center crop ``size`` (both
    skipped when ``size`` is None: the image as it is), then normalize."""

    def __init__(
        self, size: int | None, resize: int | None, interpolation: str, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        self.size = size
        self.resize = resize
        self.interpolation = interpolation
        self.to_tensor = ToNormalizedTensor(mean, std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = ToRGB()(image)
        if self.size is not None and self.resize is not None:
            mode = F.InterpolationMode(self.interpolation)
            image = F.center_crop(F.resize(image, self.resize, interpolation=mode), [self.size, self.size])
        return self.to_tensor(image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, resize={self.resize}, interpolation={self.interpolation})"


class MultiView:
    """Apply each pipeline to the same image: ``image -> [view_1, ..., view_n]`` (a list of tensors)."""

    def __init__(self, pipelines: Sequence[Callable[[Image.Image], torch.Tensor]]) -> None:
        self.pipelines = list(pipelines)

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        return [pipeline(image) for pipeline in self.pipelines]

    def __len__(self) -> int:
        return len(self.pipelines)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(p) for p in self.pipelines)
        return f"{type(self).__name__}([\n  {inner}\n])"
