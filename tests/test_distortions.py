"""The distortion bank: monotone levels, image contract, determinism, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.metrics import structural_similarity

from mixiqa.distortions import (DISTORTIONS, distort, distortion_names, random_distortion)
from mixiqa.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """scikit-image's astronaut (bundled with the wheel), 96 x 96, float32 in [0, 1]."""
    im = Image.fromarray(data.astronaut()).resize((96, 96), Image.BICUBIC)
    return np.asarray(im, np.float32) / 255.0


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(a, b, channel_axis=-1, data_range=1.0)


def test_registry_has_the_promised_types():
    names = distortion_names()
    assert len(names) >= 14
    for required in ("gaussian_blur", "motion_blur", "defocus_blur", "white_noise",
                     "chroma_noise", "impulse_noise", "jpeg", "jpeg2000", "webp",
                     "contrast_decrease", "darken", "brighten", "desaturate", "pixelate",
                     "color_quantize"):
        assert required in DISTORTIONS


@pytest.mark.parametrize("name", distortion_names())
def test_levels_are_monotone_in_ssim(photo, name):
    scores = [ssim(photo, distort(photo, name, level, np.random.default_rng(0)))
              for level in range(1, 6)]
    assert scores[0] < 0.999, f"{name} level 1 changes nothing"
    assert all(b <= a + 1e-6 for a, b in zip(scores, scores[1:])), (name, scores)
    assert scores[0] - scores[-1] > 0.05, f"{name}: levels 1 and 5 barely differ {scores}"


@pytest.mark.parametrize("name", distortion_names())
def test_shape_dtype_range_preserved(photo, name):
    out = distort(photo[:40, :56], name, 5, np.random.default_rng(1))   # non-square
    assert out.shape == (40, 56, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and np.isfinite(out).all()


def test_deterministic_by_seed(photo):
    for name in ("white_noise", "motion_blur", "impulse_noise", "chroma_noise"):
        a = distort(photo, name, 3, np.random.default_rng(7))
        b = distort(photo, name, 3, np.random.default_rng(7))
        c = distort(photo, name, 3, np.random.default_rng(8))
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)
    assert np.array_equal(distort(photo, "white_noise", 2), distort(photo, "white_noise", 2))


def test_bad_name_and_level_raise_config_error(photo):
    with pytest.raises(ConfigError, match="gaussian_blur"):   # did-you-mean names the fix
        distort(photo, "gausian_blur", 2)
    for level in (0, 6, 2.5, True, "3"):
        with pytest.raises(ConfigError, match="1 .*5"):
            distort(photo, "jpeg", level)
    with pytest.raises(DataError, match="RGB"):
        distort(photo[..., 0], "jpeg", 2)


def test_random_distortion_single_and_composed(photo):
    rng = np.random.default_rng(0)
    out, applied = random_distortion(photo, rng)
    assert len(applied) == 1 and applied[0][0] in DISTORTIONS and 1 <= applied[0][1] <= 5
    assert out.shape == photo.shape and out.dtype == np.float32
    out, applied = random_distortion(photo, rng, compose_prob=1.0)
    assert len(applied) == 2 and applied[0][0] != applied[1][0]
    assert not np.array_equal(out, photo)
    a, _ = random_distortion(photo, np.random.default_rng(3), 0.5)
    b, _ = random_distortion(photo, np.random.default_rng(3), 0.5)
    assert np.array_equal(a, b)
    with pytest.raises(ConfigError):
        random_distortion(photo, rng, compose_prob=1.5)


def test_each_distortion_is_fast_enough():
    """Loose bound (the CI machine is shared): median of 3 calls on 256 x 256 < 0.3 s."""
    img = np.asarray(Image.fromarray(data.chelsea()).resize((256, 256)), np.float32) / 255
    for name in distortion_names():
        distort(img, name, 3)   # warm up imports
        times = []
        for _ in range(3):
            t = time.perf_counter()
            distort(img, name, 3)
            times.append(time.perf_counter() - t)
        assert np.median(times) < 0.3, (name, times)
