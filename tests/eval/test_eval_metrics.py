"""Frame metrics on inputs with known answers; motion buckets; windows; charts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worldsim.eval import metrics
from worldsim.eval.evaluate import windows_of
from worldsim.eval.idm import motion_buckets
from worldsim.eval.plot import SIZE, line_chart, nice_ticks


def frames(n: int = 3, h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def blur(x: np.ndarray) -> np.ndarray:
    """3x3 box blur of uint8 frames (edges kept)."""
    f = x.astype(np.float64)
    out = f.copy()
    out[:, 1:-1, 1:-1] = sum(f[:, 1 + dy: f.shape[1] - 1 + dy, 1 + dx: f.shape[2] - 1 + dx]
                             for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    return out.round().astype(np.uint8)


def test_psnr_identical_is_capped_and_known_offset_is_exact():
    a = frames()
    assert np.allclose(metrics.psnr(a, a), metrics.PSNR_CAP_DB)
    b = np.clip(a.astype(int) + np.where(a < 255, 1, -1), 0, 255).astype(np.uint8)  # every value off by one
    assert np.allclose(metrics.psnr(a, b), 10 * math.log10(255**2), atol=1e-4)  # 48.13 dB


def test_psnr_matches_the_training_psnr_per_frame():
    from worldsim.training.samples import psnr as training_psnr

    a, b = frames(seed=1), frames(seed=2)
    unit = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    expected = [training_psnr(unit(a[i: i + 1]), unit(b[i: i + 1])) for i in range(len(a))]
    assert np.allclose(metrics.psnr(a, b), expected, atol=1e-4)


def test_ssim_is_one_for_identical_frames_symmetric_and_lower_with_noise():
    a = frames(seed=3)
    assert np.allclose(metrics.ssim(a, a), 1.0, atol=1e-5)
    rng = np.random.default_rng(0)
    slightly = np.clip(a + rng.normal(0, 5, a.shape), 0, 255).astype(np.uint8)
    very = np.clip(a + rng.normal(0, 60, a.shape), 0, 255).astype(np.uint8)
    s_slight, s_very = metrics.ssim(a, slightly), metrics.ssim(a, very)
    assert np.all(s_slight < 1) and np.all(s_very < s_slight)
    assert np.allclose(metrics.ssim(very, a), s_very, atol=1e-6)


def test_ssim_works_on_frames_smaller_than_its_window():
    a = frames(h=6, w=9)
    assert np.allclose(metrics.ssim(a, a), 1.0, atol=1e-5)


def test_sharpness_ratio_is_one_for_identical_frames_and_below_one_for_blur():
    a = frames(seed=4)
    real = metrics.laplacian_variance(a)
    assert metrics.sharpness_ratio(real, real) == pytest.approx(1.0)
    assert metrics.sharpness_ratio(metrics.laplacian_variance(blur(a)), real) < 0.5
    flat = np.full_like(a, 77)
    assert np.allclose(metrics.laplacian_variance(flat), 0.0)


def test_color_histogram_distance_zero_for_same_colours_one_for_disjoint():
    a = frames(seed=5)
    counts = metrics.color_histogram(a)
    assert counts.sum() == a.size // 3
    assert metrics.histogram_distance(counts, counts) == 0.0
    assert metrics.histogram_distance(counts, metrics.color_histogram(a[::-1])) == 0.0  # order is irrelevant
    black, white = np.zeros_like(a), np.full_like(a, 255)
    assert metrics.histogram_distance(metrics.color_histogram(black), metrics.color_histogram(white)) == 1.0


def test_frechet_distance_known_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6))
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    assert metrics.frechet_distance(x, x + shift) == pytest.approx((shift**2).sum(), rel=1e-6)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2 with the sets' own (biased) statistics
    a, b = rng.normal(0, 1, (400, 1)), rng.normal(2, 3, (400, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std() - b.std()) ** 2
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    # fewer samples than dimensions (singular covariances) still gives a finite, non-negative number
    assert 0 <= metrics.frechet_distance(x[:3], x[3:6]) < math.inf


def test_drift_ratio():
    assert metrics.drift_ratio([2.0, 3.0, 5.0]) == 2.5
    assert math.isnan(metrics.drift_ratio([0.0, 1.0]))
    assert math.isnan(metrics.drift_ratio([]))


def test_windows_cover_whole_windows_only():
    assert windows_of(1440, 240) == [slice(k * 240, (k + 1) * 240) for k in range(6)]
    assert windows_of(500, 240) == [slice(0, 240), slice(240, 480)]  # the partial tail is dropped
    assert windows_of(24, 240) == [slice(0, 24)]  # shorter than a window: one window of everything


def test_motion_buckets_camera_dead_zone_and_keys():
    from worldsim.conditioning import load_scheme

    camera = load_scheme("camera").encoding_dict()
    actions = np.array([[1.0, 0.0, -1.0, 1.0], [0.1, -0.5, 0.19, 0.0], [-0.3, 0.25, 0.21, 0.0]], np.float32)
    assert motion_buckets(actions, camera).tolist() == [[2, 1, 0], [1, 0, 1], [0, 2, 2]]
    keys = load_scheme("keys").encoding_dict()
    names = list(keys["actions"])
    pressed = np.zeros((3, len(names)), np.float32)
    pressed[0, names.index("forward")] = pressed[0, names.index("turn_left")] = 1
    pressed[1, names.index("back")] = pressed[1, names.index("strafe_right")] = 1
    pressed[2, names.index("use")] = 1  # USE moves nothing
    assert motion_buckets(pressed, keys).tolist() == [[2, 1, 0], [0, 2, 1], [1, 1, 1]]


def test_nice_ticks_are_round_numbers_inside_the_range():
    ticks, decimals = nice_ticks(1, 1440)
    assert ticks.tolist() == [250, 500, 750, 1000, 1250] and decimals == 0
    ticks, decimals = nice_ticks(0.51, 0.6)
    assert ticks.min() >= 0.51 and ticks.max() <= 0.6 and decimals >= 2


def test_line_chart_draws_series_and_survives_nan():
    x = np.arange(1, 50)
    image = line_chart({"a": (x, np.sin(x)), "b": (x, np.where(x % 7, np.cos(x), np.nan)),
                        "flat": (x[:1], np.ones(1))}, "title", "frame", "value")
    assert image.shape == (SIZE[1], SIZE[0], 3) and image.dtype == np.uint8
    assert (image != 255).any(axis=2).mean() > 0.02  # something was drawn
