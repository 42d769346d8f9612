"""FID maths on the host in float64, exactly as pytorch-fid, plus streaming statistics and
precision/recall (Kynkäänniemi et al. 2019).

* ``FeatureStats``: running float64 sum, sum of outer products and count; batches of any
  size (uneven last batch included) give the same mu/sigma as one-shot ``np.cov`` (N - 1
  normalisation). Stats of disjoint sets add (``a + b``, ``allreduce`` across processes).
* ``frechet_distance``: pytorch-fid's ``calculate_frechet_distance``: scipy ``sqrtm`` of
  sigma1 @ sigma2; if not finite, retry with eps*I added to both; a complex result keeps its
  real part when the diagonal's imaginary parts are within 1e-3, else raises.
* ``to_uint8``: the one quantisation from [-1, 1] floats (rounding, not truncation) used by
  FID and by saved samples (it is ``genmod.writers.to_uint8``).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from genmod.writers import to_uint8  # noqa: F401  (re-exported: the single quantisation)


class FeatureStats:
    """Streaming first and second moments of features in float64."""

    def __init__(self, dim: int = 2048):
        self.dim = int(dim)
        self.count = 0
        self.sum = np.zeros(self.dim, np.float64)
        self.sum_outer = np.zeros((self.dim, self.dim), np.float64)

    def update(self, features) -> "FeatureStats":
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must be (N, {self.dim}), got {x.shape}")
        self.count += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sum_outer += x.T @ x
        return self

    def __add__(self, other: "FeatureStats") -> "FeatureStats":
        if self.dim != other.dim:
            raise ValueError(f"cannot merge stats of dim {self.dim} and {other.dim}")
        out = FeatureStats(self.dim)
        out.count = self.count + other.count
        out.sum = self.sum + other.sum
        out.sum_outer = self.sum_outer + other.sum_outer
        return out

    def allreduce(self) -> "FeatureStats":
        """Sum over processes (each process embedded its own images); a no-op on one."""
        import jax

        if jax.process_count() == 1:
            return self
        from jax.experimental import multihost_utils

        # JAX arrays are float32 by default: ship the float64 sums as raw bytes (uint8) and
        # reinterpret them on the host, so the merge stays exact.
        raw = np.concatenate([np.asarray([self.count], np.float64), self.sum, self.sum_outer.ravel()])
        gathered = multihost_utils.process_allgather(raw.view(np.uint8))
        total = np.asarray(gathered).reshape(jax.process_count(), -1).view(np.float64).sum(axis=0)
        out = FeatureStats(self.dim)
        out.count = int(round(total[0]))
        out.sum = total[1:1 + self.dim]
        out.sum_outer = total[1 + self.dim:].reshape(self.dim, self.dim)
        return out

    @property
    def mu(self) -> np.ndarray:
        if self.count < 1:
            raise ValueError("no features accumulated")
        return self.sum / self.count

    @property
    def sigma(self) -> np.ndarray:
        """Unbiased covariance (N - 1), as ``np.cov(rowvar=False)``."""
        if self.count < 2:
            raise ValueError(f"covariance needs at least 2 samples, have {self.count}")
        mu = self.mu
        cov = (self.sum_outer - self.count * np.outer(mu, mu)) / (self.count - 1)
        return (cov + cov.T) / 2

    def mu_sigma(self):
        return self.mu, self.sigma


def stats_of(features) -> FeatureStats:
    return FeatureStats(np.shape(features)[1]).update(features)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), pytorch-fid's recipe."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in dimension: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    for name, v in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(v).all():  # scipy's sqrtm may never return on NaN input
            raise ValueError(f"FID: {name} holds {int((~np.isfinite(v)).sum())} non-finite values "
                             f"(NaN/inf statistics: recompute them)")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "singular": handled just below
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"FID: singular covariance product; adding {eps} to the diagonal of both "
                      f"covariances", RuntimeWarning, stacklevel=2)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def read_npz(path: str, what: str, error=ValueError, hint: str = "") -> dict:
    """Every array of the npz at ``path`` (pickles refused: a file must not run code); a file
    that cannot be read raises ``error`` with one line naming it, what it should be and ``hint``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        raise error(f"{path}: cannot read {what} npz ({e}){hint}") from None


def fid_from_stats(a: FeatureStats, b) -> float:
    """``b``: FeatureStats or a (mu, sigma) pair (e.g. loaded reference statistics)."""
    mu2, sigma2 = b.mu_sigma() if isinstance(b, FeatureStats) else b
    return frechet_distance(a.mu, a.sigma, mu2, sigma2)


# ---------------------------------------------------------------------------------------------
# Precision / recall (improved, k-NN manifolds)


def _sq_dists(a, b):
    """Squared Euclidean distances (len(a), len(b)) in float64."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def knn_radii(features, k: int = 3, block: int = 1024) -> np.ndarray:
    """Squared distance from each point to its k-th nearest other point (self excluded)."""
    x = np.asarray(features, np.float64)
    if len(x) <= k:
        raise ValueError(f"k-NN radii need more than k={k} points, have {len(x)}")
    out = np.empty(len(x))
    for i in range(0, len(x), block):
        d = _sq_dists(x[i:i + block], x)
        out[i:i + block] = np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself
    return out


def _coverage(query, ref, ref_radii, block: int = 1024) -> float:
    """Fraction of ``query`` points inside at least one ref hypersphere."""
    q, r = np.asarray(query, np.float64), np.asarray(ref, np.float64)
    inside = 0
    for i in range(0, len(q), block):
        d = _sq_dists(q[i:i + block], r)
        inside += int(np.any(d <= ref_radii[None, :], axis=1).sum())
    return inside / len(q)


def precision_recall(real_features, fake_features, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al. (2019): precision = share of fakes inside the real manifold (union
    of k-NN balls around real points), recall = share of reals inside the fake manifold."""
    real_r, fake_r = knn_radii(real_features, k), knn_radii(fake_features, k)
    return _coverage(fake_features, real_features, real_r), _coverage(real_features, fake_features, fake_r)
