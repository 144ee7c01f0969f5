"""The batched view pipeline (``[views] pipeline = "batched"``): random parameters per sample, pixel work per batch.

Per sample (in a DataLoader worker, under the engine's per-sample seed): decode, and draw every view's parameters
from torch's global generator in exactly the order the PIL pipeline (:meth:`sslcore.data.augment.ViewSpec.build`)
draws them, so that one seed gives both pipelines the same crop boxes, flips, jitter factors and order, grayscale,
blur sigma and solarization. Per batch (:mod:`sslcore.data.batched_ops`): crop, resize, colour, blur and normalize
every view position as tensor operations, on the training device when the batch reaches it
(:class:`PendingViews`), else in the loader's workers (:mod:`sslcore.engine.views`). docs/views.md compares the two
pipelines.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Literal

import attrs
import torch
from PIL import Image

from sslcore.data import batched_ops as ops
from sslcore.data.augment import (
    BLUR_SIGMA,
    CROP_RATIO,
    MultiView,
    ViewSpec,
    coin,
    draw_blur,
    draw_jitter,
    rgb_pixels,
    sample_crop_box,
)
from sslcore.data.pixels import to_rgb

Pipeline = Literal["pil", "batched"]

# Layout of one view's parameter row.
BOX = slice(0, 4)  # top, left, height, width
FLIP, JITTER = 4, 5  # 1.0 when applied
FACTORS = slice(6, 10)  # brightness, contrast, saturation factors, hue shift
ORDER = slice(10, 14)  # the jitter operations in the order they apply
GRAY, SIGMA, SOLARIZE = 14, 15, 16  # SIGMA: 0.0 for no blur
NUM_PARAMS = 17
_NO_JITTER = ([1.0, 1.0, 1.0, 0.0], [0, 1, 2, 3])


def draw_view(spec: ViewSpec, width: int, height: int) -> list[float]:
    """One view's parameter row, drawn in the order of ``spec.build()``'s pipeline."""
    top, left, h, w = sample_crop_box(width, height, (spec.scale[0], spec.scale[1]), CROP_RATIO)
    flip = coin(0.5)
    if spec.grayscale_first:
        gray = coin(spec.grayscale_prob)
        jitter = draw_jitter(spec.jitter, spec.jitter_prob)
    else:
        jitter = draw_jitter(spec.jitter, spec.jitter_prob)
        gray = coin(spec.grayscale_prob)
    sigma = draw_blur(spec.blur_prob, BLUR_SIGMA) if spec.blur_prob > 0 else None
    solarize = coin(spec.solarize_prob) if spec.solarize_prob > 0 else False
    factors, order = jitter or _NO_JITTER
    return [top, left, h, w, flip, jitter is not None, *factors, *order, gray, sigma or 0.0, solarize]


@attrs.frozen
class ViewDraw:
    """One sample: its RGB pixels, uint8 (3, H, W), and one parameter row per view, (views, NUM_PARAMS)."""

    pixels: torch.Tensor
    params: torch.Tensor


class BatchTransform(abc.ABC):
    """A view transform of the batched pipeline: ``__call__`` decodes one sample and draws its views' parameters (in
    a loader worker, under the sample's seed), :meth:`apply` makes the views of a whole batch as tensor operations.
    The engine gives any subclass the batched pipeline (a plugin's own view transform included)."""

    @abc.abstractmethod
    def __call__(self, image: Image.Image) -> ViewDraw:
        """The sample's RGB pixels and one parameter row per view."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Views per image."""

    @abc.abstractmethod
    def apply(self, pixels: torch.Tensor, params: torch.Tensor) -> list[torch.Tensor]:
        """uint8 ``pixels`` (B, 3, H, W) and ``params`` (B, views, P) -> one float (B, 3, h, w) tensor per view."""


class BatchedViews(BatchTransform):
    """The batched counterpart of ``MultiView([spec.build() for spec in specs])``: ``__call__`` draws a sample's
    parameters, :meth:`apply` makes the views of a batch."""

    def __init__(self, specs: Sequence[ViewSpec]) -> None:
        self.specs = list(specs)

    def __call__(self, image: Image.Image) -> ViewDraw:
        image = to_rgb(image)
        rows = [draw_view(spec, image.width, image.height) for spec in self.specs]
        return ViewDraw(rgb_pixels(image), torch.tensor(rows, dtype=torch.float32))

    def __len__(self) -> int:
        return len(self.specs)

    def apply(self, pixels: torch.Tensor, params: torch.Tensor) -> list[torch.Tensor]:
        """Views of a batch: uint8 ``pixels`` (B, 3, H, W) and ``params`` (B, views, NUM_PARAMS) -> one float
        (B, 3, size, size) tensor per view, normalized. View positions with the same spec (SimCLR's two views,
        multi-crop's local crops) are made together, as one batch of their crops."""
        images = pixels.float()
        positions: dict[ViewSpec, list[int]] = {}
        for view, spec in enumerate(self.specs):
            positions.setdefault(spec, []).append(view)
        views: list[torch.Tensor] = [images] * len(self.specs)
        for spec, group in positions.items():
            rows = params[:, group].transpose(0, 1).reshape(-1, NUM_PARAMS)  # position-major: view, then sample
            source = torch.arange(len(images), device=images.device).repeat(len(group))
            for view, made in zip(group, self._view(spec, images, source, rows).chunk(len(group))):
                views[view] = made
        return views

    @staticmethod
    def _view(spec: ViewSpec, images: torch.Tensor, source: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """The crops ``params`` of ``images[source]`` (one row each) made into views of ``spec``."""
        boxes = params[:, BOX]
        x = ops.resized_crops(images, source, boxes, spec.size, spec.interpolation).div_(255.0).clamp_(0.0, 1.0)
        x = ops.flip(x, params[:, FLIP] > 0)
        gray = params[:, GRAY] > 0 if spec.grayscale_prob > 0 else None
        if gray is not None and spec.grayscale_first:
            x = ops.grayscale(x, gray)
        if spec.jitter_prob > 0 and any(spec.jitter):
            x = ops.color_jitter(x, params[:, JITTER] > 0, params[:, FACTORS], params[:, ORDER].long(), spec.jitter)
        if gray is not None and not spec.grayscale_first:
            x = ops.grayscale(x, gray)
        if spec.blur_prob > 0:
            x = ops.gaussian_blur(x, params[:, SIGMA], BLUR_SIGMA[1])
        if spec.solarize_prob > 0:
            x = ops.solarize(x, params[:, SOLARIZE] > 0)
        mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(spec) for spec in self.specs)
        return f"{type(self).__name__}([\n  {inner}\n])"


def stack_pixels(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """uint8 (3, H, W) images -> (B, 3, H_max, W_max), each padded by repeating its last row and column (a crop
    resampled up to its box's edge then reads the image's own edge, as PIL's crop does, never the padding)."""
    height, width = max(image.shape[1] for image in images), max(image.shape[2] for image in images)
    out = torch.empty(len(images), 3, height, width, dtype=torch.uint8)
    for row, image in zip(out, images):
        h, w = image.shape[1:]
        row[:, :h, :w] = image
        row[:, :h, w:] = image[:, :, -1:]
        row[:, h:] = row[:, h - 1 : h]
    return out


@attrs.frozen
class PendingViews:
    """A batch's pixels and parameters on their way to the device that makes its views (:meth:`finish`); moves with
    ``.to`` and ``.pin_memory`` as a tensor does, so Accelerate's and the DataLoader's batch handling carry it."""

    pixels: torch.Tensor
    params: torch.Tensor
    views: BatchTransform

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PendingViews:
        move = {"device": device, "non_blocking": non_blocking}
        return PendingViews(self.pixels.to(**move), self.params.to(**move), self.views)

    def pin_memory(self) -> PendingViews:
        return PendingViews(self.pixels.pin_memory(), self.params.pin_memory(), self.views)

    def finish(self) -> list[torch.Tensor]:
        return self.views.apply(self.pixels, self.params)


def batch_draws(draws: Sequence[ViewDraw], views: BatchTransform) -> PendingViews:
    """Samples' draws -> one :class:`PendingViews`."""
    return PendingViews(stack_pixels([d.pixels for d in draws]), torch.stack([d.params for d in draws]), views)


def make_views(specs: Sequence[ViewSpec], pipeline: Pipeline) -> MultiView | BatchedViews:
    """The view transform of ``specs`` (one per view position) for the recipe's ``pipeline``."""
    if pipeline == "batched":
        return BatchedViews(specs)
    return MultiView([spec.build() for spec in specs])
