"""NIQE: distance of an image's patch statistics from a model of pristine natural images.

Follows the authors' MATLAB release (``computequality.m``, ``computefeature.m``,
``estimateaggdparam.m``, ``modelparameters.mat``) step by step:

- grey image as MATLAB's ``rgb2gray`` gives it from 8 bits, cropped to whole 96x96 patches;
- MSCN with a 7x7 Gaussian window (sigma 7/6), replicate padding, C = 1;
- per patch, 18 features: an AGGD fit of the MSCN values (alpha, mean of the two betas)
  and AGGD fits (alpha, mean, beta_l, beta_r) of the products with the 4 neighbours
  (circular shifts within the patch); again on the image halved by MATLAB's ``imresize``
  with 48x48 patches: 36 features per patch;
- a multivariate Gaussian fitted to the image's patches (NaN-aware, as ``nanmean`` and
  ``nancov``), and its distance to the pristine one:
  sqrt((mu_p - mu_d)^T pinv((S_p + S_d) / 2) (mu_p - mu_d)).

The pristine model (mu_p, S_p) is the release's own, fitted on sharpness-selected patches
of 125 pristine images; sharpness selection is a step of that fitting only, never of
scoring. Lower NIQE is better; a uniform image (no patch with texture) scores NaN, as in
the release (its AGGD fits are undefined).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
from scipy.special import gamma as gamma_fn

from mixiqa.classical.brisque import aggd_fit, imresize_half, mscn, to_gray255

PATCH = 96              # patch side at full resolution, as in the release
MIN_SIDE = PATCH        # one patch at least; the release suggests several


@lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """(mu (36,), cov (36, 36)) of the release's pristine MVG; see
    ``mixiqa/assets/classical/README.md`` for where the file comes from."""
    path = resources.files("mixiqa").joinpath("assets", "classical", "niqe_pristine.npz")
    with resources.as_file(path) as p, np.load(p, allow_pickle=False) as d:
        return d["mu"].copy(), d["cov"].copy()


def _patches(field: np.ndarray, size: int) -> np.ndarray:
    """(H, W) field, H and W multiples of ``size`` -> (N, size, size) patches, column-major
    patch order as MATLAB's ``blkproc`` (the order does not change the result)."""
    h, w = field.shape
    p = field.reshape(h // size, size, w // size, size).transpose(2, 0, 1, 3)
    return p.reshape(-1, size, size)


def patch_features(mscn_field: np.ndarray, size: int) -> np.ndarray:
    """The 18 NIQE features of every ``size`` x ``size`` patch of an MSCN field.

    Returns:
        (N, 18) features: alpha and mean beta of the MSCN values, then (alpha, mean,
        beta_l, beta_r) of the products along shifts (0,1), (1,0), (1,1), (1,-1).

    Reference: Mittal, Soundararajan & Bovik, "Making a 'Completely Blind' Image Quality
    Analyzer", IEEE SPL 2013, Sec. III.
    """
    blocks = _patches(mscn_field, size)                       # (N, s, s)
    flat = blocks.reshape(len(blocks), -1)                    # (N, s*s)
    alpha, left, right = aggd_fit(flat)
    cols = [alpha, _beta(alpha, left + right) / 2]
    for shift in [(0, 1), (1, 0), (1, 1), (1, -1)]:
        pair = (blocks * np.roll(blocks, shift, axis=(1, 2))).reshape(len(blocks), -1)
        alpha, left, right = aggd_fit(pair)
        bl, br = _beta(alpha, left), _beta(alpha, right)
        cols += [alpha, (br - bl) * gamma_fn(2 / alpha) / gamma_fn(1 / alpha), bl, br]
    return np.stack(cols, axis=1)


def _beta(alpha: np.ndarray, std: np.ndarray) -> np.ndarray:
    """AGGD scale beta from a side's std: std * sqrt(Gamma(1/a) / Gamma(3/a))."""
    return std * np.sqrt(gamma_fn(1 / alpha) / gamma_fn(3 / alpha))


def niqe_features(image) -> np.ndarray:
    """(N, 36) features of an image's N patches, 18 per scale.

    Raises:
        DataError: An image smaller than 96x96 or of an unsupported kind.
    """
    gray = to_gray255(image, MIN_SIDE, "NIQE")
    h, w = gray.shape
    gray = gray[: h - h % PATCH, : w - w % PATCH]
    feats = []
    for scale in (1, 2):
        field, _ = mscn(gray, "nearest")
        feats.append(patch_features(field, PATCH // scale))
        if scale == 1:
            gray = imresize_half(gray)
    return np.concatenate(feats, axis=1)


def mvg_distance(feats: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> float:
    """NIQE's distance between the MVG of (N, D) patch features and a model (mu, cov).

    Rows with a NaN are left out of the covariance (``nancov``) and NaN entries out of the
    mean (``nanmean``); a covariance from one row is zero, as MATLAB's ``cov`` gives it.
    """
    complete = feats[~np.isnan(feats).any(axis=1)]
    if len(complete) == 0:
        return float("nan")
    with np.errstate(invalid="ignore"):
        mu_d = np.nanmean(feats, axis=0)
    cov_d = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros_like(cov)
    mid = (cov + cov_d) / 2
    diff = mu - mu_d
    # MATLAB's pinv tolerance: max(size) * norm * eps
    inv = np.linalg.pinv(mid, rcond=max(mid.shape) * np.finfo(float).eps)
    return float(np.sqrt(diff @ inv @ diff))


def niqe(image) -> float:
    """NIQE of an image (PIL image or array, see :func:`~mixiqa.classical.brisque.to_gray255`);
    lower is better, about 2-4 for pristine photographs.

    Reference: Mittal, Soundararajan & Bovik, "Making a 'Completely Blind' Image Quality
    Analyzer", IEEE Signal Processing Letters 2013.
    """
    mu, cov = pristine_model()
    return mvg_distance(niqe_features(image), mu, cov)
