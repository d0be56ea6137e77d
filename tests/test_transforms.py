"""Resize/crop policies and image decoding errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from mixiqa.data.transforms import Transform, eval_transform, train_transform
from mixiqa.errors import DataError


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "a.jpg"
    Image.fromarray(rng.integers(0, 255, (300, 600, 3), dtype=np.uint8)).save(p)
    return str(p)


def test_train_policy_resizes_short_side_and_crops(photo):
    t = train_transform((0.5,) * 3, (0.5,) * 3, short=128, crop=96)
    a = t(photo, np.random.default_rng(1))
    b = t(photo, np.random.default_rng(1))
    c = t(photo, np.random.default_rng(2))
    assert a.shape == (3, 96, 96) and torch.equal(a, b) and not torch.equal(a, c)
    assert t.load(photo).size == (256, 128)  # aspect kept


def test_eval_full_image_and_grid(photo):
    full = eval_transform((0.5,) * 3, (0.5,) * 3, short=150)(photo)
    assert full.shape == (3, 150, 300)
    grid = eval_transform((0.5,) * 3, (0.5,) * 3, short=150, crop=100, n_crops=3)(photo)
    assert grid.shape == (3, 3, 100, 100)
    assert Transform(150, 100, "grid", 3).spec != Transform(150, 100, "grid", 2).spec


def test_corrupt_and_too_small(tmp_path, photo):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.jpg"):
        train_transform((0,) * 3, (1,) * 3)(str(bad))
    # an image smaller than the crop is upscaled to fit it, aspect kept
    assert Transform(None, 400, "center")(photo).shape == (3, 400, 400)


def test_native_crop_decodes_at_full_resolution(tmp_path):
    # a large JPEG cropped without resizing must keep native pixels (no draft decoding)
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 255, (800, 1000, 3), dtype=np.uint8)
    p = tmp_path / "big.jpg"
    Image.fromarray(arr).save(p, quality=95)
    t = Transform(None, 100, "center", 1, (0.0,) * 3, (1.0,) * 3)
    assert t.load(str(p)).size == (1000, 800)
    resized = Transform(200, 100, "center", 1, (0.0,) * 3, (1.0,) * 3)
    assert min(resized.load(str(p)).size) == 200


@pytest.mark.parametrize("size,short,crop", [((600, 300), 128, 96), ((300, 300), 256, 224),
                                             ((90, 120), 128, 128), ((200, 150), 150, 96)])
def test_centre_crop_from_source_box_matches_resize_then_crop(tmp_path, size, short, crop):
    """The fast centre crop (resampling only the crop's source box) gives the pixels of
    resize-then-crop up to rounding of Pillow's fixed-point filter weights."""
    from mixiqa.data.transforms import ensure_min_side, open_rgb, resize_short

    rng = np.random.default_rng(3)
    smooth = Image.fromarray(rng.integers(0, 255, (size[1] // 10 + 1, size[0] // 10 + 1, 3),
                                          dtype=np.uint8)).resize(size, Image.BILINEAR)
    p = tmp_path / "s.png"
    smooth.save(p)
    t = Transform(short, crop, "center", 1, (0.5,) * 3, (0.25,) * 3)
    im = ensure_min_side(resize_short(open_rgb(str(p)), short), crop)
    x, y = (im.size[0] - crop) // 2, (im.size[1] - crop) // 2
    ref = torch.from_numpy(np.array(im.crop((x, y, x + crop, y + crop)))).permute(2, 0, 1)
    fast = t.pixels(str(p))
    assert fast.dtype == torch.uint8 and fast.shape == (3, crop, crop)
    diff = (fast.int() - ref.int()).abs()
    assert diff.max() <= 4 and (diff > 0).float().mean() < 0.01
    # the float path is the same pixels, normalised: (x / 255 - mean) / std
    torch.testing.assert_close(t(str(p)), (fast.float() / 255 - 0.5) / 0.25)


def test_max_short_keeps_native_pixels_up_to_the_cap(tmp_path):
    rng = np.random.default_rng(4)
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(small)
    Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(big)
    t = Transform(None, None, "center", 1, (0.5,) * 3, (0.5,) * 3, max_short=100)
    assert tuple(t.pixels(str(small)).shape) == (3, 60, 80)           # untouched
    assert torch.equal(t.pixels(str(small)).permute(1, 2, 0),
                       torch.from_numpy(np.array(Image.open(small))))
    assert tuple(t.pixels(str(big)).shape) == (3, 100, 150)           # shrunk to the cap
    assert "max100" in t.spec and "max" not in Transform(None, None, "center").spec


def test_same_shape_groups_cut_by_pixels():
    from mixiqa.data.transforms import same_shape_groups

    xs = [torch.zeros(3, 4, 4), torch.zeros(3, 2, 2), torch.zeros(3, 4, 4), torch.zeros(3, 4, 4)]
    assert same_shape_groups(xs) == [[0, 2, 3], [1]]
    assert same_shape_groups(xs, max_pixels=32) == [[0, 2], [3], [1]]     # two 4x4 per pass
    assert same_shape_groups(xs, max_pixels=1) == [[0], [2], [3], [1]]    # never empty
