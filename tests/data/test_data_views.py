"""View transforms: number, sizes and order of views, determinism, and each augmentation's behaviour."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision import transforms as T

from sslcore.config import structure
from sslcore.data.augment import (
    CenterView,
    RandomColorJitter,
    RandomGaussianBlur,
    RandomGrayscale,
    RandomSolarize,
    ToNormalizedTensor,
    sample_crop_box,
)
from sslcore.data.view_configs import sslcore_register_transforms
from sslcore.data.views import (
    BYOLViewsConfig,
    EvalViewsConfig,
    MoCoV1ViewsConfig,
    MoCoV2ViewsConfig,
    MultiCropViewsConfig,
    SimCLRViewsConfig,
    build_byol,
    build_eval,
    build_mocov1,
    build_mocov2,
    build_multicrop,
    build_simclr,
)
from sslcore.errors import SslcoreError
from sslcore.registry import Registry


def _photo(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    """A smooth colour gradient plus noise: varied hues, so every augmentation changes it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin(x / 5.0)], axis=-1)
    pixels = np.clip(pixels + rng.normal(0, 10, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _steps(transform, view: int = 0) -> list:
    return transform.pipelines[view].transforms


def _step(transform, cls, view: int = 0):
    found = [s for s in _steps(transform, view) if isinstance(s, cls)]
    return found[0] if found else None


def test_all_kinds_are_registered():
    registry = Registry("transform")
    sslcore_register_transforms(registry)
    assert registry.names() == ["byol", "eval", "mocov1", "mocov2", "multicrop", "simclr"]


@pytest.mark.parametrize(
    ("transform", "count", "shape"),
    [
        (build_simclr(SimCLRViewsConfig(size=32)), 2, (3, 32, 32)),
        (build_simclr(SimCLRViewsConfig(size=24, num_views=4)), 4, (3, 24, 24)),
        (build_mocov2(MoCoV2ViewsConfig(size=32)), 2, (3, 32, 32)),
        (build_mocov1(MoCoV1ViewsConfig(size=32)), 2, (3, 32, 32)),
        (build_byol(BYOLViewsConfig(size=32)), 2, (3, 32, 32)),
        (build_simclr(SimCLRViewsConfig()), 2, (3, 224, 224)),
        (build_eval(EvalViewsConfig()), 1, (3, 40, 48)),
    ],
)
def test_views_have_the_right_number_shape_and_dtype(transform, count, shape):
    views = transform(_photo())
    assert len(views) == count
    assert all(v.shape == shape and v.dtype == torch.float32 for v in views)


def test_views_are_deterministic_under_a_seed_and_differ_between_views():
    transform = build_simclr(SimCLRViewsConfig(size=32))
    image = _photo()
    torch.manual_seed(3)
    first = transform(image)
    torch.manual_seed(3)
    again = transform(image)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1])  # two independent draws
    torch.manual_seed(4)
    assert not torch.equal(transform(image)[0], first[0])


def test_transforms_pickle_for_worker_processes():
    transform = build_multicrop(MultiCropViewsConfig(global_size=32, style="dino"))
    clone = pickle.loads(pickle.dumps(transform))
    torch.manual_seed(0)
    a = transform(_photo())
    torch.manual_seed(0)
    b = clone(_photo())
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_multicrop_globals_first_and_style_defaults():
    swav = build_multicrop(MultiCropViewsConfig())
    assert [v.shape[-1] for v in swav(_photo(300, 260))] == [224] * 2 + [96] * 6
    assert _steps(swav)[1].scale == (0.14, 1.0) and _steps(swav, 2)[1].scale == (0.05, 0.14)
    assert _step(swav, RandomGaussianBlur).p == 0.5 and _step(swav, RandomGaussianBlur, 7).p == 0.5
    assert _step(swav, RandomColorJitter).strengths == (0.8, 0.8, 0.8, 0.2)

    dino = build_multicrop(MultiCropViewsConfig(style="dino", global_size=32))
    assert [v.shape[-1] for v in dino(_photo())] == [32] * 2 + [16] * 8
    assert _steps(dino)[1].scale == (0.4, 1.0) and _steps(dino, 2)[1].scale == (0.05, 0.4)
    assert _step(dino, RandomSolarize) is None and _step(dino, RandomSolarize, 1).p == 0.2
    assert _step(dino, RandomGaussianBlur) is None  # small images: no blur

    dino224 = build_multicrop(MultiCropViewsConfig(style="dino", local_crops=2))
    assert [_step(dino224, RandomGaussianBlur, i).p for i in range(4)] == [1.0, 0.1, 0.5, 0.5]

    custom = build_multicrop(MultiCropViewsConfig(global_crops=3, global_size=64, local_crops=0))
    assert [v.shape[-1] for v in custom(_photo(80, 80))] == [64] * 3
    with pytest.raises(ValueError, match="exactly 2"):
        MultiCropViewsConfig(style="dino", global_crops=3)


def test_size_chooses_blur_and_colour_strength():
    small, large = build_simclr(SimCLRViewsConfig(size=32)), build_simclr(SimCLRViewsConfig(size=224))
    assert _step(small, RandomGaussianBlur) is None and _step(large, RandomGaussianBlur).p == 0.5
    assert _step(small, RandomColorJitter).strengths == pytest.approx((0.4, 0.4, 0.4, 0.1))  # strength 0.5
    assert _step(large, RandomColorJitter).strengths == pytest.approx((0.8, 0.8, 0.8, 0.2))
    forced = build_simclr(SimCLRViewsConfig(size=32, blur_prob=0.5, strength=1.0))
    assert _step(forced, RandomGaussianBlur).p == 0.5
    byol = build_byol(BYOLViewsConfig())
    assert [_step(byol, RandomGaussianBlur, i).p for i in range(2)] == [1.0, 0.1]
    assert _step(byol, RandomSolarize) is None and _step(byol, RandomSolarize, 1).p == 0.2
    assert _step(build_mocov2(MoCoV2ViewsConfig()), RandomGaussianBlur).p == 0.5
    assert _step(build_mocov2(MoCoV2ViewsConfig(size=32)), RandomGaussianBlur) is None


def test_mocov1_puts_grayscale_before_jitter():
    names = [type(s).__name__ for s in _steps(build_mocov1(MoCoV1ViewsConfig()))]
    assert names.index("RandomGrayscale") < names.index("RandomColorJitter")
    assert _step(build_mocov1(MoCoV1ViewsConfig()), RandomColorJitter).p == 1.0
    names = [type(s).__name__ for s in _steps(build_mocov2(MoCoV2ViewsConfig()))]
    assert names.index("RandomColorJitter") < names.index("RandomGrayscale")


def test_sample_crop_box_respects_scale_and_ratio():
    torch.manual_seed(0)
    for _ in range(300):
        top, left, h, w = sample_crop_box(200, 120, (0.08, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 200
        assert 0.08 * 0.9 <= h * w / (200 * 120) <= 1.0
        assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
    # a request no crop can satisfy falls back to the largest centered crop within the ratio range
    assert sample_crop_box(100, 10, (0.99, 1.0), (1.0, 1.0)) == (0, 45, 10, 10)


def test_eval_view_matches_torchvision_resize_center_crop():
    image = _photo(300, 260)
    ours = build_eval(EvalViewsConfig(size=224))(image)[0]
    reference = T.Compose(
        [T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    )(image)
    assert torch.allclose(ours, reference, atol=1e-5)
    small = _photo(32, 32)
    native = build_eval(EvalViewsConfig(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))(small)[0]
    assert torch.allclose(native, (T.ToTensor()(small) - 0.5) / 0.25, atol=1e-6)
    assert torch.equal(build_eval(EvalViewsConfig(size=32))(small)[0], build_eval(EvalViewsConfig())(small)[0])


def test_to_normalized_tensor_equals_to_tensor_then_normalize():
    image = _photo()
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    expected = T.Normalize(mean, std)(T.ToTensor()(image))
    assert torch.allclose(ToNormalizedTensor(mean, std)(image), expected, atol=1e-5)
    gray = Image.new("L", (5, 4), 51)
    assert CenterView(None, None, "bilinear", (0.0,) * 3, (1.0,) * 3)(gray).shape == (3, 4, 5)


def test_color_jitter_factor_ranges():
    gray = Image.new("RGB", (8, 8), (100, 100, 100))
    brightness = RandomColorJitter(0.4, 0.0, 0.0, 0.0, p=1.0)
    torch.manual_seed(0)
    values = [np.asarray(brightness(gray))[0, 0, 0] for _ in range(200)]
    assert 60 <= min(values) < 70 and 130 < max(values) <= 140  # factor ~ U[0.6, 1.4]
    never = RandomColorJitter(0.4, 0.4, 0.4, 0.1, p=0.0)
    assert never(gray) is gray
    with pytest.raises(ValueError, match="hue"):
        RandomColorJitter(0.4, 0.4, 0.4, 0.6, p=1.0)


def test_grayscale_solarize_and_blur():
    image = _photo()
    gray = np.asarray(RandomGrayscale(1.0)(image))
    assert gray.shape[-1] == 3 and (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert np.array_equal(np.asarray(RandomSolarize(1.0)(image)), np.asarray(ImageOps.solarize(image, 128)))
    assert RandomSolarize(0.0)(image) is image
    assert RandomGaussianBlur(0.0)(image) is image
    torch.manual_seed(0)
    blurred = np.asarray(RandomGaussianBlur(1.0)(image)).astype(float)
    original = np.asarray(image).astype(float)
    assert np.abs(np.diff(blurred, axis=1)).mean() < np.abs(np.diff(original, axis=1)).mean()  # smoother


def test_blur_sigma_is_uniform_between_bounds(monkeypatch):
    radii = []

    class Recorder:
        def __init__(self, radius):
            radii.append(radius)

        def filter(self, image):
            return image

    monkeypatch.setattr("sslcore.data.augment.ImageFilter.GaussianBlur", Recorder)
    torch.manual_seed(0)
    blur = RandomGaussianBlur(1.0)
    for _ in range(400):
        blur(_photo(4, 4))
    assert 0.1 <= min(radii) < 0.2 and 1.9 < max(radii) <= 2.0
    assert math.isclose(float(np.mean(radii)), 1.05, abs_tol=0.1)


def test_config_errors_name_the_field():
    with pytest.raises(SslcoreError, match=r"\[views.scale\]"):
        structure({"scale": [0.5, 0.2]}, SimCLRViewsConfig, where="r.toml", path="views")
    with pytest.raises(SslcoreError, match=r"\[views.std\]"):
        structure({"std": [0.2, 0.2, 0.0]}, SimCLRViewsConfig, where="r.toml", path="views")
    with pytest.raises(SslcoreError, match=r"\[views.solarize_probs\]"):
        structure({"solarize_probs": [0.1]}, BYOLViewsConfig, where="r.toml", path="views")
