"""The no-reference degeneration detector on synthetic worlds: quiet on real-looking frames, loud on streaks."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.errors import WorldsimError
from worldsim.eval.degeneration import DegenerationDetector, DetectorConfig, _runs_at_least, frame_cues


def _room(rng: np.random.Generator, n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Brown walls with vertical edges and a grey floor, the camera moving sideways: a stand-in for engine frames."""
    frames = np.empty((n, h, w, 3), np.uint8)
    base = rng.integers(0, 1000)
    for i in range(n):
        x = np.arange(w) + base + 2 * i
        wall = 90 + 40 * ((x // 9) % 2)[None, :, None] * np.array([1.0, 0.7, 0.4])
        img = np.broadcast_to(wall, (h, w, 3)).copy()
        img[2 * h // 3:] = 70 + rng.normal(0, 6, (h - 2 * h // 3, w, 1))
        frames[i] = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return frames


def _streaks(rng: np.random.Generator, n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """The collapse of the first shipped worlds: horizontal blue and white bands."""
    rows = rng.integers(0, 3, (n, h))
    colours = np.array([[20, 30, 200], [240, 240, 250], [60, 40, 30]], np.uint8)
    return np.broadcast_to(colours[rows][:, :, None, :], (n, h, w, 3)).copy()


@pytest.fixture(scope="module")
def detector() -> DegenerationDetector:
    rng = np.random.default_rng(0)
    return DegenerationDetector.fit([_room(rng, 60) for _ in range(4)], DetectorConfig(persistence=3))


def test_real_looking_frames_of_an_unseen_episode_are_not_flagged(detector):
    verdict = detector.judge(_room(np.random.default_rng(7), 80))
    assert verdict["fired_fraction"] == 0.0 and verdict["first_fired"] is None
    assert verdict["flagged_fraction"] < 0.05


def test_streaks_are_flagged_and_fire_after_the_persistence(detector):
    rng = np.random.default_rng(1)
    frames = np.concatenate([_room(rng, 10), _streaks(rng, 10)])
    verdict = detector.judge(frames)
    assert verdict["flagged"][10:].all()
    assert verdict["first_fired"] == 10 + detector.config.persistence - 1


def test_streak_cue_separates_streaks_from_rooms():
    rng = np.random.default_rng(2)
    assert frame_cues(_streaks(rng, 4))[:, 0].min() > frame_cues(_room(rng, 4))[:, 0].max()


def test_runs_need_consecutive_flags():
    flags = np.array([1, 1, 0, 1, 1, 1, 0], bool)
    assert _runs_at_least(flags, 3).tolist() == [False, False, False, False, False, True, False]


def test_save_and_load_give_the_same_scores(detector, tmp_path):
    frames = _streaks(np.random.default_rng(3), 5)
    detector.save(tmp_path / "det")
    loaded = DegenerationDetector.load(tmp_path / "det")
    assert loaded.threshold == detector.threshold
    np.testing.assert_allclose(loaded.scores(frames), detector.scores(frames), rtol=1e-4)


def test_bad_inputs_are_clear_errors(tmp_path):
    rng = np.random.default_rng(4)
    with pytest.raises(WorldsimError, match="at least two episodes"):
        DegenerationDetector.fit([_room(rng, 10)])
    with pytest.raises(WorldsimError, match="uint8 frames"):
        frame_cues(np.zeros((2, 48, 64), np.uint8))
    with pytest.raises(WorldsimError, match="no readable degeneration detector"):
        DegenerationDetector.load(tmp_path)


@pytest.mark.slow
def test_false_positives_on_the_engines_own_frames_stay_under_one_percent(tmp_path):
    """The issue's bar on the real world: fitted on 24 reference episodes, the detector flags < 1% of the frames
    of 4 held-out engine episodes of a minute and a half, and never fires on them (minutes: the engine records)."""
    pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")
    from worldsim.conditioning import load_scheme
    from worldsim.data.dataset import resize_frames
    from worldsim.eval.ground_truth import DEFAULT_SEED, GroundTruthSpec, load_ground_truth

    scheme = load_scheme("camera")
    small = lambda episodes: [resize_frames(e.frames, (128, 96)) for e in episodes]  # noqa: E731
    reference = small(load_ground_truth(tmp_path / "ref", GroundTruthSpec(DEFAULT_SEED + 1, 24, 400), scheme, False))
    held_out = small(load_ground_truth(tmp_path / "gt", GroundTruthSpec(DEFAULT_SEED, 4, 1440), scheme, False))
    detector = DegenerationDetector.fit(reference)
    verdicts = [detector.judge(frames) for frames in held_out]
    assert np.mean([v["flagged_fraction"] for v in verdicts]) < 0.01
    assert all(v["first_fired"] is None for v in verdicts)
