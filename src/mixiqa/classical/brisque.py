"""BRISQUE: natural-scene statistics of MSCN coefficients, scored by an RBF SVR.

The 36 features (18 per scale, 2 scales) and the standard LIVE-trained regressor follow
the authors' MATLAB release (``brisque_feature.m``, ``brisquescore.m``, ``allmodel``,
``allrange``) step by step, so scores match it up to float rounding:

- grey image as MATLAB's ``rgb2gray`` gives it from 8 bits, in [0, 255];
- MSCN with a 7x7 Gaussian window (sigma 7/6), zero padding (``filter2``), C = 1;
- a GGD fit of the MSCN field and AGGD fits of its products with its 4 neighbours
  (circular shifts), shape parameters found on the grid 0.2:0.001:10;
- the second scale from MATLAB's ``imresize(im, 0.5)`` (bicubic, antialiased);
- features printed with ``%f``, scaled to [-1, 1] by ``svm-scale`` (printed with ``%g``)
  and scored by the ``epsilon-SVR`` of ``allmodel`` (774 support vectors, gamma 0.05).

The NSS helpers here (grey conversion, MSCN, GGD/AGGD fits, MATLAB resize) are shared by
:mod:`mixiqa.classical.niqe`, whose features are BRISQUE's fitted per patch.

Lower BRISQUE is better (it predicts LIVE DMOS). :class:`BrisqueRegressor` refits the
regressor (scikit-learn's RBF SVR) on any training split instead.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
from scipy import ndimage, sparse
from scipy.special import gamma as gamma_fn

from mixiqa.errors import DataError

MIN_SIDE = 32           # smallest image side BRISQUE accepts (the half scale must hold the window)
_GRID = 0.2 + 0.001 * np.arange(9801)     # shape grid of the MATLAB release, 0.2:0.001:10
_RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])  # MATLAB


def to_gray255(image, min_side: int = 1, method: str = "image") -> np.ndarray:
    """An image as MATLAB's ``double(rgb2gray(uint8 image))``: (H, W) float64 in [0, 255].

    Args:
        image: A PIL image, or an array: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (alpha
            dropped); uint8 in [0, 255], or float in [0, 1].
        min_side: Smallest height and width accepted.
        method: Name used in error messages.

    Raises:
        DataError: Wrong shape or range, or a side smaller than ``min_side``.
    """
    arr = np.asarray(image.convert("RGB") if _is_pil(image) and image.mode not in ("L", "RGB")
                     else image)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        arr = arr[..., 0] if arr.shape[2] == 1 else arr[..., :3]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or arr.size == 0:
        raise DataError(f"{method}: expected a grey (H, W) or colour (H, W, 3) image, got an "
                        f"array of shape {arr.shape}.")
    if arr.dtype.kind == "f":
        if np.nanmax(arr) > 1.0 + 1e-6 or np.nanmin(arr) < -1e-6:
            raise DataError(f"{method}: float images must lie in [0, 1]; pass uint8 for "
                            "values in 0..255.")
        arr = arr * 255.0
    elif arr.dtype != np.uint8:
        raise DataError(f"{method}: unsupported pixel type {arr.dtype}; pass uint8 (0..255) "
                        "or float (0..1).")
    h, w = arr.shape[:2]
    if min(h, w) < min_side:
        raise DataError(f"{method}: image of {w}x{h} pixels is too small; it needs at least "
                        f"{min_side}x{min_side}.")
    arr = arr.astype(np.float64)
    gray = arr @ _RGB2GRAY if arr.ndim == 3 else arr
    return np.round(gray)  # rgb2gray on uint8 returns uint8, as the release reads its images


def _is_pil(image) -> bool:
    return hasattr(image, "convert") and hasattr(image, "mode")


def gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)``, normalised to sum 1."""
    x = np.arange(size) - (size - 1) / 2
    w = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma ** 2))
    return w / w.sum()


def mscn(gray: np.ndarray, padding: str = "constant") -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients and the local std field.

    Args:
        gray: (H, W) image in [0, 255].
        padding: ``constant`` (zeros, MATLAB ``filter2``: BRISQUE) or ``nearest``
            (MATLAB ``imfilter(..., 'replicate')``: NIQE).

    Returns:
        (MSCN, sigma), both (H, W). The window is applied in 2-D, as MATLAB does: a
        separable pass is faster but rounds differently, and in flat regions products of
        MSCN values within 1e-14 of zero change sides in the AGGD fit (NIQE moves ~1e-3).

    Reference: Mittal, Moorthy & Bovik, "No-Reference Image Quality Assessment in the
    Spatial Domain", IEEE TIP 2012, Eq. 1-2.
    """
    w = gaussian_window()
    mu = ndimage.correlate(gray, w, mode=padding, cval=0.0)
    sigma = np.sqrt(np.abs(ndimage.correlate(gray * gray, w, mode=padding, cval=0.0) - mu * mu))
    return (gray - mu) / (sigma + 1.0), sigma


def _nearest_on_grid(table: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Index of the entry of a monotonic ``table`` nearest each ``value``, the first on
    ties, and 0 where ``value`` is not finite: the argmin of the release, as MATLAB's
    ``min`` gives it, without an (N, 9801) temporary."""
    sign = 1.0 if table[-1] > table[0] else -1.0
    t, v = sign * table, sign * np.where(np.isfinite(value), value, 0.0)  # t increasing
    hi = np.clip(np.searchsorted(t, v), 1, t.size - 1)
    pick = np.where(np.abs(t[hi] - v) < np.abs(v - t[hi - 1]), hi, hi - 1)
    return np.where(np.isfinite(value), pick, 0)


@lru_cache(maxsize=None)
def _tables() -> tuple[np.ndarray, np.ndarray]:
    g1, g2, g3 = gamma_fn(1 / _GRID), gamma_fn(2 / _GRID), gamma_fn(3 / _GRID)
    return g1 * g3 / g2 ** 2, g2 ** 2 / (g1 * g3)   # GGD rho(a) (falls), AGGD r(a) (rises)


def ggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shape alpha and std sigma of a zero-mean generalised Gaussian, by moment matching.

    Args:
        x: (..., N) samples; one fit per leading index.

    Reference: Sharifi & Leon-Garcia 1995, as ``estimateggdparam.m`` of BRISQUE.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_sq = np.mean(x * x, axis=-1)
        rho = sigma_sq / np.mean(np.abs(x), axis=-1) ** 2
    return _GRID[_nearest_on_grid(_tables()[0], rho)], np.sqrt(sigma_sq)


def aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shape alpha and left/right stds of an asymmetric generalised Gaussian.

    Zeros belong to neither side, as in the release (``vec(vec<0)``, ``vec(vec>0)``).

    Args:
        x: (..., N) samples; one fit per leading index.

    Returns:
        (alpha, left_std, right_std), each of shape ``x.shape[:-1]``.

    Reference: Lasmar, Stitou & Berthoumieu 2009, as ``estimateaggdparam.m`` of BRISQUE.
    """
    neg, pos = x < 0, x > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.sqrt(np.sum(np.where(neg, x * x, 0.0), -1) / neg.sum(-1))
        right = np.sqrt(np.sum(np.where(pos, x * x, 0.0), -1) / pos.sum(-1))
        g = left / right
        r_hat = np.mean(np.abs(x), -1) ** 2 / np.mean(x * x, -1)
        r_norm = r_hat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    return _GRID[_nearest_on_grid(_tables()[1], r_norm)], left, right


def _resize_matrix(n_in: int, scale: float) -> sparse.csr_matrix:
    """(n_out, n_in) weights of MATLAB ``imresize`` along one axis: bicubic (a = -0.5),
    kernel widened by 1/scale when shrinking (antialiasing), symmetric borders."""
    n_out = int(np.ceil(n_in * scale))
    kscale = min(scale, 1.0)
    width = 4.0 / kscale
    u = (np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale))[:, None]   # (n_out, 1)
    idx = np.floor(u - width / 2) + np.arange(int(np.ceil(width)) + 2)[None]  # 1-based
    d = np.abs(kscale * (u - idx))
    cubic = np.where(d <= 1, 1.5 * d ** 3 - 2.5 * d ** 2 + 1,
                     np.where(d <= 2, -0.5 * d ** 3 + 2.5 * d ** 2 - 4 * d + 2, 0.0))
    weights = kscale * cubic
    weights /= weights.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])
    cols = mirror[(idx.astype(int) - 1) % (2 * n_in)]
    rows = np.repeat(np.arange(n_out), idx.shape[1])
    return sparse.csr_matrix((weights.ravel(), (rows, cols.ravel())), shape=(n_out, n_in))


def imresize_half(image: np.ndarray) -> np.ndarray:
    """MATLAB's ``imresize(image, 0.5)`` of a (H, W) float image (bicubic, antialiased)."""
    rows = _resize_matrix(image.shape[0], 0.5) @ image     # (ceil(H/2), W), dim 1 first
    return (_resize_matrix(image.shape[1], 0.5) @ rows.T).T


def _pair_products(m: np.ndarray, shifts) -> list[np.ndarray]:
    """Products of the MSCN field with its circularly shifted copies (MATLAB circshift);
    the last two axes are (rows, columns)."""
    return [m * np.roll(m, s, axis=(-2, -1)) for s in shifts]


def _aggd_features(alpha, left, right) -> list:
    """(alpha, mean, left var, right var) of ``brisque_feature.m``."""
    mean = (right - left) * gamma_fn(2 / alpha) / np.sqrt(gamma_fn(1 / alpha) * gamma_fn(3 / alpha))
    return [alpha, mean, left ** 2, right ** 2]


def brisque_features(image) -> np.ndarray:
    """The 36 BRISQUE features of an image (18 at full and 18 at half resolution).

    Args:
        image: PIL image or array, see :func:`to_gray255`.

    Returns:
        (36,) float64 features, in the order of ``brisque_feature.m``.

    Raises:
        DataError: An image smaller than :data:`MIN_SIDE` or of an unsupported kind.

    Reference: Mittal, Moorthy & Bovik, "No-Reference Image Quality Assessment in the
    Spatial Domain", IEEE TIP 2012.
    """
    gray = to_gray255(image, MIN_SIDE, "BRISQUE")
    feats: list[float] = []
    for scale in range(2):
        m, _ = mscn(gray, "constant")
        alpha, sigma = ggd_fit(m.ravel())
        feats += [alpha, sigma ** 2]
        for p in _pair_products(m, [(0, 1), (1, 0), (1, 1), (-1, 1)]):
            feats += _aggd_features(*aggd_fit(p.ravel()))
        if scale == 0:
            gray = imresize_half(gray)
    return np.array(feats, dtype=np.float64)


class BrisqueSVR:
    """A libsvm epsilon-SVR with an RBF kernel and ``svm-scale`` feature ranges.

    Attributes:
        sv: (S, D) support vectors, in scaled feature space.
        coef: (S,) dual coefficients.
        rho: Offset: f(x) = sum_i coef_i exp(-gamma |sv_i - x|^2) - rho.
        gamma: RBF width.
        feature_min, feature_max: (D,) ranges that ``svm-scale`` maps to [lower, upper].
    """

    def __init__(self, sv, coef, rho, gamma, feature_min, feature_max, lower=-1.0, upper=1.0):
        self.sv, self.coef = np.asarray(sv, float), np.asarray(coef, float)
        self.rho, self.gamma = float(rho), float(gamma)
        self.feature_min = np.asarray(feature_min, float)
        self.feature_max = np.asarray(feature_max, float)
        self.lower, self.upper = float(lower), float(upper)

    def scale(self, features: np.ndarray) -> np.ndarray:
        """``svm-scale -r allrange`` of (N, D) features written with ``%f``; output kept
        to the 6 significant digits ``svm-scale`` prints."""
        f = np.round(np.asarray(features, float), 6)
        x = self.lower + (self.upper - self.lower) * (f - self.feature_min) / (
            self.feature_max - self.feature_min)
        return np.array([float(f"{v:g}") for v in x.ravel()]).reshape(x.shape)

    def decision(self, scaled: np.ndarray) -> np.ndarray:
        """SVR output for (N, D) already scaled features."""
        d2 = ((scaled[:, None, :] - self.sv[None]) ** 2).sum(-1)   # (N, S)
        return np.exp(-self.gamma * d2) @ self.coef - self.rho

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores of (N, D) or (D,) raw features."""
        f = np.atleast_2d(features)
        out = self.decision(self.scale(f))
        return out if np.ndim(features) == 2 else out[:1]


@lru_cache(maxsize=1)
def live_model() -> BrisqueSVR:
    """The standard regressor of the BRISQUE release, trained on LIVE (DMOS, lower is
    better); see ``mixiqa/assets/classical/README.md`` for where the file comes from."""
    path = resources.files("mixiqa").joinpath("assets", "classical", "brisque_live.npz")
    with resources.as_file(path) as p, np.load(p, allow_pickle=False) as d:
        return BrisqueSVR(d["sv"], d["coef"], d["rho"], d["gamma"], d["feature_min"],
                          d["feature_max"], d["lower"], d["upper"])


def brisque(image) -> float:
    """BRISQUE score of an image with the standard LIVE model: about 0 (pristine) to 100
    (heavily distorted); lower is better. NaN for a uniform image (its MSCN products all
    have one sign, so the AGGD fit is undefined, as in the release).

    Reference: Mittal, Moorthy & Bovik, IEEE TIP 2012.
    """
    return float(live_model().predict(brisque_features(image))[0])


class BrisqueRegressor:
    """BRISQUE's regressor refit on a training split (scikit-learn's epsilon-SVR, RBF).

    As the release trains it: features min-max scaled to [-1, 1] over the training images
    (``svm-scale``), then an RBF SVR. Targets are standardised so that ``C`` and
    ``epsilon`` mean the same on every score scale. ``C`` and ``gamma`` are chosen by SRCC
    on the validation images when :meth:`fit` gets some, else they are ``C``/``gamma``
    (the grids' middle values when those are None).

    Args:
        C: Fixed SVR penalty; None chooses it from ``C_grid``.
        gamma: Fixed RBF width on scaled features; None chooses it from ``gamma_grid``.
        epsilon: Width of the insensitive tube, in target standard deviations.
        C_grid, gamma_grid: Values tried on the validation images (the LIVE model of the
            release has C = 1024, gamma = 0.05).

    Attributes (after fit): ``svr_``, ``feature_min_``, ``feature_max_``, ``y_mean_``,
    ``y_std_``, ``C_``, ``gamma_``, ``val_srcc_`` (None without validation images).

    Reference: Mittal, Moorthy & Bovik, IEEE TIP 2012 (SVR on the 36 features).
    """

    def __init__(self, C: float | None = None, gamma: float | None = None,
                 epsilon: float = 0.1, C_grid: tuple = (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0),
                 gamma_grid: tuple = (0.01, 0.05, 0.2)):
        self.C, self.gamma, self.epsilon = C, gamma, epsilon
        self.C_grid, self.gamma_grid = tuple(C_grid), tuple(gamma_grid)

    def fit(self, features: np.ndarray, scores: np.ndarray, val_features: np.ndarray | None = None,
            val_scores: np.ndarray | None = None) -> "BrisqueRegressor":
        """Learn from (N, 36) features and (N,) scores (higher or lower better: the
        prediction follows the scores' direction)."""
        x, y = self._check(features, scores, "training")
        if len(y) < 3 or np.ptp(y) == 0:
            raise DataError(f"BRISQUE refit needs at least 3 training images with different "
                            f"scores; got {len(y)}. Use a larger training split.")
        self.feature_min_, self.feature_max_ = x.min(0), x.max(0)
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std())
        xs, ys = self._scale(x), (y - self.y_mean_) / self.y_std_
        cs = [self.C] if self.C is not None else list(self.C_grid)
        gs = [self.gamma] if self.gamma is not None else list(self.gamma_grid)
        self.val_srcc_ = None
        if val_features is not None and len(val_features) >= 3 and len(cs) * len(gs) > 1:
            xv, yv = self._check(val_features, val_scores, "validation")
            self._search(xs, ys, self._scale(xv), yv, cs, gs)
        else:
            self.C_, self.gamma_ = cs[len(cs) // 2], gs[len(gs) // 2]
            self.svr_ = self._svr(self.C_, self.gamma_).fit(xs, ys)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N,) predictions on the training scores' scale."""
        x = np.atleast_2d(np.asarray(features, float))
        return self.svr_.predict(self._scale(x)) * self.y_std_ + self.y_mean_

    def _search(self, xs, ys, xv, yv, cs, gs) -> None:
        from mixiqa.evaluate import srcc

        best = None
        for c in cs:
            for g in gs:
                svr = self._svr(c, g).fit(xs, ys)
                pred = svr.predict(xv)
                s = srcc(pred, yv) if np.ptp(pred) > 0 else -np.inf
                if best is None or s > best[0]:
                    best = (s, c, g, svr)
        self.val_srcc_, self.C_, self.gamma_, self.svr_ = best
        self.val_srcc_ = float(self.val_srcc_)

    def _svr(self, C: float, gamma: float):
        from sklearn.svm import SVR

        return SVR(kernel="rbf", C=C, gamma=gamma, epsilon=self.epsilon)

    def _scale(self, x: np.ndarray) -> np.ndarray:
        span = np.where(self.feature_max_ > self.feature_min_,
                        self.feature_max_ - self.feature_min_, 1.0)
        return -1.0 + 2.0 * (x - self.feature_min_) / span

    @staticmethod
    def _check(features, scores, part: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.atleast_2d(np.asarray(features, float)), np.asarray(scores, float).ravel()
        if x.shape[0] != y.shape[0]:
            raise DataError(f"BRISQUE refit: {x.shape[0]} {part} feature rows but {y.shape[0]} "
                            "scores; pass one score per image.")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise DataError(f"BRISQUE refit: {part} features or scores hold NaN/inf; drop the "
                            "images that could not be read.")
        return x, y
