"""Unlabelled folders: the ``images`` source (any layout), 16-bit / float / alpha images read right, and
``sslcore run --data DIR``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslcore.cli import main
from sslcore.data.augment import ToRGB
from sslcore.data.image_files import ImagesSourceConfig, build_images
from sslcore.data.pixels import to_rgb
from sslcore.errors import SslcoreError


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_grey_image_keeps_its_intensities(tmp_path: Path, suffix: str) -> None:
    values = np.array([[0, 128 * 257], [200 * 257, 65535]], dtype=np.uint16)
    path = tmp_path / f"grey16{suffix}"
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode.startswith("I")
        rgb = ToRGB()(image)
    assert rgb.mode == "RGB"
    assert np.asarray(rgb)[..., 0].tolist() == [[0, 128], [200, 255]]  # PIL's convert("RGB") gives 0, 255, 255, 255


def test_a_float_image_is_scaled_by_its_own_range(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)).save(path)
    with Image.open(path) as image:
        assert image.mode == "F"
        assert np.asarray(to_rgb(image))[..., 1].tolist() == [[0, 64], [128, 255]]


def test_alpha_palette_and_cmyk_images_become_rgb_without_warnings() -> None:
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.info["transparency"] = b"\x00\x00"
    images = {
        "RGBA": Image.new("RGBA", (2, 2), (10, 20, 30, 0)),
        "LA": Image.new("LA", (2, 2), (90, 0)),
        "P": palette,
        "CMYK": Image.new("CMYK", (2, 2), (0, 0, 0, 0)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels = {mode: to_rgb(image).getpixel((0, 0)) for mode, image in images.items()}
    assert pixels == {"RGBA": (10, 20, 30), "LA": (90, 90, 90), "P": (10, 20, 30), "CMYK": (255, 255, 255)}


def _folder(root: Path) -> list[str]:
    """Images in a nested layout with mixed extensions, a hidden folder and a text file; the expected files."""
    rng = np.random.default_rng(0)
    files = ["a/x/1.png", "a/2.JPG", "b/deep/er/3.tif", "c.png"]
    for name in files + [".cache/4.png"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8)).save(
            root / name, format="JPEG" if name.endswith("JPG") else None
        )
    (root / "a" / "notes.txt").write_text("not an image")
    return sorted(str(root / name) for name in files)


def test_the_images_source_reads_every_image_below_a_folder_in_path_order(tmp_path: Path) -> None:
    expected = _folder(tmp_path)
    dataset = build_images(ImagesSourceConfig(path=str(tmp_path)), "train")
    assert dataset.column_names == ["image", "index"] and len(dataset) == 4
    assert [row["image"].filename for row in dataset] == expected
    assert len(build_images(ImagesSourceConfig(path=str(tmp_path), train_limit=2), "train")) == 2
    with pytest.raises(SslcoreError, match="no test split; set test = <folder>, or drop \\[eval\\] \\(eval=none\\)"):
        build_images(ImagesSourceConfig(path=str(tmp_path)), "test")


def test_check_with_data_resolves_an_images_run_without_eval(tmp_path: Path, capsys) -> None:
    _folder(tmp_path)
    main(["check", "--data", str(tmp_path), "run.steps=3"])
    printed = capsys.readouterr().out
    assert f'[data]\nkind = "images"\ncache = "none"\npath = "{tmp_path}"' in printed
    assert "[eval]" not in printed and "steps = 3" in printed and 'name = "quickstart"' in printed


def test_run_without_recipe_or_data_is_a_one_line_error(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "run.steps=3"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: no recipe given; name a recipe (`sslcore recipes` lists them) or use --data DIR"
    )


def test_run_with_data_trains_on_the_folder(tmp_path: Path) -> None:
    _folder(tmp_path / "images")
    main(
        [
            "run",
            "--data",
            str(tmp_path / "images"),
            "run.steps=1",
            "run.batch_size=4",
            "run.num_workers=0",
            "run.progress=false",
            f"run.output_dir={tmp_path / 'runs'}",
            "views.size=16",
        ]
    )
    run_dir = tmp_path / "runs" / "quickstart"
    assert (run_dir / "backbone.safetensors").is_file()
    assert 'kind = "images"' in (run_dir / "recipe.toml").read_text()
