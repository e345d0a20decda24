"""Frame metrics: pure functions of uint8 frames (N, H, W, 3) or feature arrays; no models, no files.

Per frame: PSNR, SSIM, sharpness (variance of the Laplacian). Per set of frames: the colour histogram, the
Fréchet distance between two sets of features. Every function works in small batches, so a minute of video
never has to be one float tensor in memory.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# An MSE below 0.65 grey levels^2 counts as 50 dB: identical frames (inf dB, e.g. copy-previous while the
# player stands still) would otherwise swamp any mean.
PSNR_CAP_DB = 50.0
SSIM_WINDOW = 11  # Gaussian window of Wang et al. (2004), as scikit-image's `gaussian_weights=True`
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
PIXEL_MAX = 255.0
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: the grey image the sharpness measure looks at
HISTOGRAM_BINS = 8  # per channel: an 8x8x8 joint colour histogram (512 bins), coarse enough for 10^4 pixels
BATCH = 64  # frames per torch call


def luma(frames: np.ndarray) -> np.ndarray:
    """uint8 or float (..., 3) RGB -> float32 (...) grey levels (LUMA weights)."""
    return frames.astype(np.float32, copy=False) @ np.array(LUMA, np.float32)


def _float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def _batched(fn, *arrays: np.ndarray) -> np.ndarray:
    n = len(arrays[0])
    out = [fn(*(_float(a[i: i + BATCH]) for a in arrays)) for i in range(0, n, BATCH)]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


# ---- per frame ---------------------------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR in dB per frame of uint8 (N, H, W, 3) pairs, capped at PSNR_CAP_DB. Below the cap it is the number
    `worldsim.training.samples.psnr` gives for one frame pair."""

    def one(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mse = (x - y).pow(2).flatten(1).mean(1)
        return (10 * torch.log10(PIXEL_MAX**2 / mse.clamp_min(1e-12))).clamp(max=PSNR_CAP_DB)

    return _batched(one, a, b)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean SSIM per frame of uint8 (N, H, W, 3) pairs: Gaussian window 11 / sigma 1.5, each channel, averaged
    over the valid window positions and the channels (scikit-image's `structural_similarity` with
    `gaussian_weights=True, use_sample_covariance=False`, data range 255). Identical frames give 1."""

    def one(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        size = min(SSIM_WINDOW, x.shape[2], x.shape[3])
        size -= 1 - size % 2  # odd, so the window has a centre
        g = _gaussian_window(size, SSIM_SIGMA)
        kernel_h = g.view(1, 1, size, 1).expand(3, 1, size, 1)
        kernel_w = g.view(1, 1, 1, size).expand(3, 1, 1, size)

        def blur(z: torch.Tensor) -> torch.Tensor:  # separable Gaussian, valid positions only
            return F.conv2d(F.conv2d(z, kernel_h, groups=3), kernel_w, groups=3)

        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x**2
        var_y = blur(y * y) - mu_y**2
        cov = blur(x * y) - mu_x * mu_y
        c1, c2 = (SSIM_K1 * PIXEL_MAX) ** 2, (SSIM_K2 * PIXEL_MAX) ** 2
        s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        return s.flatten(1).mean(1)

    return _batched(one, a, b)


def laplacian_variance(frames: np.ndarray) -> np.ndarray:
    """Sharpness per frame: variance of the 4-neighbour Laplacian of the luma image (blur lowers it)."""
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    luma = torch.tensor(LUMA).view(1, 3, 1, 1)

    def one(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d((x * luma).sum(1, keepdim=True), kernel).flatten(1).var(1, unbiased=False)

    return _batched(one, frames)


def sharpness_ratio(generated_variance: np.ndarray, real_variance: np.ndarray) -> float:
    """Mean Laplacian variance of the generated frames over that of the real ones: 1 is as sharp as the
    engine, below 1 blurrier. A ratio of means, so a few flat frames (a wall up close) cannot blow it up."""
    real = float(np.mean(real_variance))
    return float(np.mean(generated_variance)) / real if real > 0 else math.nan


# ---- per set of frames -------------------------------------------------------------------------------------


def color_histogram(frames: np.ndarray) -> np.ndarray:
    """Counts of a joint RGB histogram, HISTOGRAM_BINS per channel, over all pixels of uint8 (N, H, W, 3)."""
    shift = 8 - int(math.log2(HISTOGRAM_BINS))
    counts = np.zeros(HISTOGRAM_BINS**3, dtype=np.int64)
    for i in range(0, len(frames), BATCH):
        q = (np.asarray(frames[i: i + BATCH]) >> shift).astype(np.int64).reshape(-1, 3)
        counts += np.bincount((q[:, 0] * HISTOGRAM_BINS + q[:, 1]) * HISTOGRAM_BINS + q[:, 2],
                              minlength=HISTOGRAM_BINS**3)
    return counts


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two histograms (counts): 0 same colours, 1 no colour in common."""
    p, q = a / max(a.sum(), 1), b / max(b.sum(), 1)
    return 0.5 * float(np.abs(p - q).sum())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) (the FID formula):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2). tr (S_a S_b)^1/2 is computed as the sum of the square
    roots of the eigenvalues of S_a^1/2 S_b S_a^1/2, which is symmetric: stable without scipy's sqrtm."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.cov(a, rowvar=False, bias=True).reshape(a.shape[1], a.shape[1])
    cov_b = np.cov(b, rowvar=False, bias=True).reshape(b.shape[1], b.shape[1])
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)
    distance = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(cross).sum()
    return max(float(distance), 0.0)  # rounding can leave -1e-12 for identical sets


def drift_ratio(windows: list[float]) -> float:
    """Last window over first window of a windowed metric: how much it changed over the rollout."""
    if not windows or not math.isfinite(windows[0]) or abs(windows[0]) < 1e-12:
        return math.nan
    return float(windows[-1] / windows[0])
