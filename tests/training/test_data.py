"""What training sees of a data set: an interrupted recording is finished first, or refused with how to finish it."""

import pytest

from worldsim.conditioning import load_scheme
from worldsim.config import replace
from worldsim.data.policies import ExplorePolicy
from worldsim.data.storage import DatasetIndex, load_episodes
from worldsim.errors import WorldsimError
from worldsim.training.data import TrainingData, record_dataset

IMAGE_SIZE = (48, 64)


class KilledPolicy(ExplorePolicy):
    """The recipe's explorer (same metadata), stopped by a Ctrl-C after `acts` actions."""

    def __init__(self, scheme, seed: int, acts: int):
        super().__init__(scheme, seed=seed)
        self.left = acts

    def act(self, frame, pose):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return super().act(frame, pose)


def record_interrupted(recipe, scheme, episodes_done: int) -> None:
    """What `worldsim train` leaves when stopped while it records the recipe's data."""
    from worldsim.data.env import make_env
    from worldsim.data.record import record

    spec = recipe.data.record
    env = make_env("doom", spec.doom, scheme)
    try:
        with pytest.raises(KeyboardInterrupt):
            record(env, KilledPolicy(scheme, spec.seed, episodes_done * spec.steps + 3), recipe.data.dir,
                   episodes=spec.episodes, steps=spec.steps, seed=spec.seed, val_fraction=spec.val_fraction)
    finally:
        env.close()


@pytest.fixture
def recipe(smoke_recipe, tmp_path):
    spec = replace(smoke_recipe.data.record, steps=12)
    return replace(smoke_recipe, data=replace(smoke_recipe.data, dir=str(tmp_path / "data"), record=spec))


def test_an_interrupted_recording_is_finished_before_training(recipe, tmp_path):
    scheme = load_scheme("camera")
    record_interrupted(recipe, scheme, episodes_done=2)
    assert [e.id for e in DatasetIndex.load(recipe.data.dir).episodes] == [0, 1]
    data = TrainingData.from_recipe(recipe, scheme, IMAGE_SIZE)
    assert data.index.complete and [e.id for e in data.index.episodes] == [0, 1, 2]
    straight = tmp_path / "straight"
    record_dataset(recipe, scheme, straight)
    assert [(e.id, e.split, e.frames) for e in data.index.episodes] == \
        [(e.id, e.split, e.frames) for e in DatasetIndex.load(straight).episodes]
    assert load_episodes(recipe.data.dir)[2].frames.tobytes() == load_episodes(straight)[2].frames.tobytes()


def test_an_interrupted_recording_without_a_record_section_is_refused(recipe):
    scheme = load_scheme("camera")
    record_interrupted(recipe, scheme, episodes_done=2)
    no_record = replace(recipe, data=replace(recipe.data, record=None))
    with pytest.raises(WorldsimError, match=r"unfinished recording \(2 of 3 episodes recorded\); finish it by "
                                            r"running the `worldsim record` command that started it again"):
        TrainingData.from_recipe(no_record, scheme, IMAGE_SIZE)


def test_an_extension_makes_its_clips_moves_from_where_the_rollout_is():
    from types import SimpleNamespace

    import numpy as np
    import torch

    from worldsim.training.clips import Clip
    from worldsim.world.walls import Walls
    from worldsim.world.warp import warp_fields

    data = TrainingData.__new__(TrainingData)  # only the world's walls and the warp's fov are used
    walls = Walls(np.array([[0.0, 0.0, 400.0, 0.0], [400.0, 0.0, 400.0, 400.0], [400.0, 400.0, 0.0, 400.0],
                            [0.0, 400.0, 0.0, 0.0]]))
    data.movement, data.warp_fov = SimpleNamespace(walkable=SimpleNamespace(walls=walls)), 90.0
    latents = torch.zeros(1, 3, 4, 4, 6)

    def clip(poses: list) -> Clip:
        poses = torch.tensor([poses], dtype=torch.float64)
        return Clip(latents, torch.zeros(1, 3, 3), torch.zeros(1, 3, 2, 2, 3), poses=poses,
                    warps=torch.from_numpy(warp_fields(poses.numpy(), walls, 90.0, 6)))

    # recorded elsewhere: 10 units ahead facing east, then 5 to the right while turning 30 degrees left
    other = clip([[300.0, 300.0, 0.0], [310.0, 300.0, 0.0], [310.0, 295.0, 30.0]])
    previous = clip([[100.0, 100.0, 90.0], [100.0, 120.0, 90.0], [100.0, 150.0, 90.0]])  # ends facing north
    moved = data.continued(other, previous)
    # the same moves in the player's own frame, made from (100, 150) facing north: ahead is +y, right is +x
    np.testing.assert_allclose(moved.poses[0].numpy(), [[100.0, 150.0, 90.0], [100.0, 160.0, 90.0],
                                                        [105.0, 160.0, 120.0]], atol=1e-9)
    np.testing.assert_allclose(moved.warps.numpy(), warp_fields(moved.poses.numpy(), walls, 90.0, 6))
    assert not np.allclose(moved.warps.numpy(), other.warps.numpy())  # seen at the rollout's depth, not the other's
    plain = Clip(latents, other.frame_cond, other.token_cond)
    assert data.continued(plain, previous) is plain  # a world that does not warp: nothing to move
