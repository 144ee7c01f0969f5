"""The embedded default dataset: scikit-learn's handwritten digits, ready without network or files.

1797 grayscale 8x8 images of the digits 0-9 (UCI optical recognition set, 16 intensity levels), shipped
inside scikit-learn. They become RGB PIL images upscaled to ``size`` pixels and are split once, stratified by
class with a fixed seed, into 1437 training and 360 test images (80 / 20), so every run sees the same split.
"""

from __future__ import annotations

import datasets
import numpy as np
from PIL import Image

NUM_TEST = 360
SPLIT_SEED = 0


def digits_split(split: str, size: int) -> datasets.Dataset:
    """The ``train`` (1437 rows) or ``test`` (360 rows) split with columns ``image`` and ``label``."""
    # Imported here: scikit-learn (with SciPy) takes seconds to import, and every run loads this plugin.
    import sklearn.datasets
    from sklearn.model_selection import train_test_split

    digits = sklearn.datasets.load_digits()
    positions = np.arange(len(digits.target))
    train, test = train_test_split(
        positions, test_size=NUM_TEST, stratify=digits.target, random_state=SPLIT_SEED
    )
    rows = train if split == "train" else test
    pixels = np.rint(digits.images[rows] * (255.0 / 16.0)).astype(np.uint8)  # 0..16 ink levels -> 0..255
    images = [Image.fromarray(p).resize((size, size), Image.Resampling.BILINEAR).convert("RGB") for p in pixels]
    features = datasets.Features(
        image=datasets.Image(), label=datasets.ClassLabel(names=[str(d) for d in range(10)])
    )
    return datasets.Dataset.from_dict({"image": images, "label": digits.target[rows].tolist()}, features=features)
