"""Any image PIL reads as 8-bit RGB, its intensities kept: 16-bit and 32-bit grey (PNG, TIFF), float TIFF, palette,
grey or colour with alpha, CMYK.

PIL's own ``convert("RGB")`` clips a 16-bit image at 255 (nearly every pixel turns white) and a float image in
[0, 1] to black and one grey. Here integer images map their full 16-bit range onto 0..255 (``v / 257``, values above
65535 clipped), float images their own minimum..maximum (a float image has no fixed range), and alpha is dropped as
torchvision's folder loader does (``convert("RGB")``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Integer modes wider than 8 bits: 16-bit grey in its byte orders, and 32-bit integers.
WIDE_INTEGER_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as an 8-bit RGB image (the same object when it is one already)."""
    if image.mode == "RGB":
        return image
    if image.mode in WIDE_INTEGER_MODES:
        grey = np.clip(np.asarray(image, dtype=np.float64) / 257.0, 0, 255)
        return Image.fromarray(grey.round().astype(np.uint8), "L").convert("RGB")
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = values.min(), values.max()
        grey = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(grey.round().astype(np.uint8), "L").convert("RGB")
    if image.mode in ("P", "PA"):  # a palette's transparency goes through RGBA (PIL warns on a direct conversion)
        image = image.convert("RGBA")
    return image.convert("RGB")
