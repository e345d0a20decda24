"""Training a world with its state beyond pixels: the movement and the keyframe memory are learned from the
recorded poses, saved in every checkpoint, and a world trained without a memory can be given one."""

import shutil

import numpy as np
import pytest
import torch

from worldsim.checkpoint import load_checkpoint
from worldsim.config import ConfigError, from_dict, replace
from worldsim.training.recipe import WorldSpec
from worldsim.training.stages import train

WORLD = {"movement": True, "memory": {"keyframes": 16, "cell": 48.0, "heading_bins": 4}}


@pytest.fixture(scope="module")
def world_run(smoke_recipe, tmp_path_factory):
    recipe = replace(smoke_recipe, world=from_dict(WorldSpec, WORLD))
    out = tmp_path_factory.mktemp("world") / "run"
    return recipe, out, train(recipe, "all", out)


def test_every_generator_stage_saves_the_movement_and_the_memory(world_run):
    recipe, out, paths = world_run
    vae_stage, *generator_stages = paths
    assert load_checkpoint(vae_stage).memory is None  # no latents yet: no memory
    for path in generator_stages:
        checkpoint = load_checkpoint(path)
        assert checkpoint.movement is not None and checkpoint.memory is not None, path
        assert 0 < len(checkpoint.memory) <= 16
        assert checkpoint.config.memory.keyframes == 16
        assert checkpoint.start_poses.shape[1] == 3
        # the recorded start poses lie on the learned walkable area
        assert checkpoint.movement.walkable.contains(checkpoint.start_poses[:, :2].numpy()).all()


def test_a_doom_world_moves_by_the_engines_physics_unless_the_recipe_says_learn_it(world_run):
    from worldsim.conditioning import load_scheme
    from worldsim.data.doom import recorded_physics
    from worldsim.data.storage import DatasetIndex
    from worldsim.training.data import TrainingData

    recipe, _, paths = world_run
    movement = load_checkpoint(paths[-1]).movement
    metadata = DatasetIndex.load(recipe.data.dir).episodes[0].metadata
    assert movement.physics == recorded_physics(metadata) and movement.motion is None
    checkpoint = load_checkpoint(paths[-1])
    data = TrainingData(recipe.data.dir, load_scheme(checkpoint.config.scheme), checkpoint.vae.config.image_size)
    data.use_vae(checkpoint.vae, checkpoint.generator.config.grid)
    data.use_world(replace(recipe.world, physics=False, memory=replace(recipe.world.memory, keyframes=0)), 1)
    assert data.movement.physics is None and data.movement.motion.shape == (5,)


def test_the_trained_world_plays_headless_with_its_pose(world_run, tmp_path):
    from worldsim.runtime.session import WorldSession

    _, _, paths = world_run
    session = WorldSession(load_checkpoint(paths[-1]))
    session.reset()
    start = session.player.pose
    for _ in range(5):
        session.step(session.encode(np.array([1.0, 0.0, 1.0, 0.0], np.float32)))
    assert session.movement.walkable.contains(session.player.pose[:2])
    assert session.player.heading != start[2]  # turned (walking may be stopped by a wall of the tiny map)


def test_a_world_without_a_memory_is_given_one_by_fine_tuning(world_run, tmp_path):
    recipe, out, _ = world_run
    narrow = out / "vae" / "checkpoint"  # its generator takes no anchor
    tuned = replace(recipe, unroll=replace(recipe.unroll, init=str(narrow), steps=1, input_lr=1e-3))
    path = train(tuned, "unroll", tmp_path / "tuned")[0]
    checkpoint = load_checkpoint(path)
    wide, before = checkpoint.generator.config, load_checkpoint(narrow).generator.config
    assert wide.token_cond_channels == before.token_cond_channels + checkpoint.config.memory.anchor_channels(
        wide.latent_channels, wide.patch)


def test_a_world_can_be_given_a_keyframe_view_it_attends_to(world_run, tmp_path):
    recipe, out, _ = world_run
    attend = from_dict(WorldSpec, {"movement": True, "memory": {**WORLD["memory"], "attend": True}})
    narrow = out / "vae" / "checkpoint"
    tuned = replace(recipe, world=attend, unroll=replace(recipe.unroll, init=str(narrow), steps=1))
    checkpoint = load_checkpoint(train(tuned, "unroll", tmp_path / "attend")[0])
    g = checkpoint.generator.config
    assert checkpoint.config.memory.attend and g.memory_channels == checkpoint.config.memory.anchor_channels(
        g.latent_channels, g.patch)
    anchored = out / "diffusion" / "checkpoint"  # takes the view as input: it cannot be continued as attending
    with pytest.raises(ConfigError, match="memory.attend.*takes the keyframe as input channels, this recipe "
                                          "attends to it"):
        train(replace(tuned, unroll=replace(tuned.unroll, init=str(anchored))), "unroll", tmp_path / "refused")


def test_the_inputs_a_memory_adds_learn_at_the_input_rate():
    import torch

    from worldsim.models.generator import GENERATOR_PRESETS, Generator, GeneratorConfig
    from worldsim.training.stages import _param_groups

    g = Generator(GeneratorConfig(latent_channels=4, latent_size=(4, 6), patch=2, token_cond_channels=5,
                                  memory_channels=3, **GENERATOR_PRESETS["tiny"]))
    rest, inputs = _param_groups(g, 1e-5, 1e-3)
    fast = {id(p) for p in inputs["params"]}
    new = [g.patch_in.weight, g.memory_in[0].weight, g.memory_in[2].bias, g.blocks[1].attn.memory_kv.weight]
    assert inputs["lr"] == 1e-3 and all(id(p) in fast for p in new)
    assert len(rest["params"]) + len(inputs["params"]) == len(list(g.parameters()))
    assert all(id(p) not in fast for p in g.blocks[0].attn.qkv.parameters())
    assert isinstance(rest["params"][0], torch.nn.Parameter)


def test_adversarial_clips_can_be_still_and_the_long_stage_refuses_them(world_run, tmp_path, monkeypatch):
    from worldsim.training import stages
    from worldsim.training.recipe import load_recipe

    recipe, out, _ = world_run
    fractions = []
    with_still_clips = stages.with_still_clips
    monkeypatch.setattr(stages, "with_still_clips", lambda clip, fraction, *a: fractions.append(fraction) or
                        with_still_clips(clip, fraction, *a))
    adversarial = replace(recipe.adversarial, init=str(out / "consistency" / "checkpoint"), steps=1,
                          still_fraction=0.5)
    train(replace(recipe, adversarial=adversarial), "adversarial", tmp_path / "still")
    assert fractions == [0.5]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nlong: {still_fraction: 0.25}\n")
    with pytest.raises(ConfigError, match="long.still_fraction.*takes no still clips"):
        load_recipe(bad)


def test_the_adversarial_stage_can_be_judged_on_following_the_controls(world_run, tmp_path, monkeypatch):
    from worldsim.eval.idm import IDMConfig, IDMTrainConfig, train_idm
    from worldsim.training import stages
    from worldsim.training.recipe import load_recipe

    recipe, out, _ = world_run
    judge = tmp_path / "judge"
    train_idm(recipe.data.dir, judge, IDMConfig(image_size=(16, 24), channels=(8, 8), feature_dim=8),
              IDMTrainConfig(steps=2, batch=4, seed=1), progress=False)
    judged = []
    action_following_loss = stages.action_following_loss
    monkeypatch.setattr(stages, "action_following_loss", lambda *a: judged.append(a[2].shape) or
                        action_following_loss(*a))
    adversarial = replace(recipe.adversarial, init=str(out / "consistency" / "checkpoint"), steps=1,
                          action_weight=0.5, action_judge=str(judge))
    train(replace(recipe, adversarial=adversarial), "adversarial", tmp_path / "judged")
    assert judged == [(recipe.adversarial.batch, recipe.adversarial.clip_frames - 1, 4, 4, 6)]
    log = (tmp_path / "judged" / "adversarial" / "log.jsonl").read_text()
    assert '"action"' in log and '"action_agreement"' in log
    # a weight without a judge, or the term in the long stage (no real continuation to read), is refused
    for text, message in (("adversarial: {action_weight: 1.0}", "needs action_judge"),
                          ("long: {action_weight: 1.0, action_judge: x}", "long.action_weight.*no real")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"name: bad\n{text}\n")
        with pytest.raises(ConfigError, match=message):
            load_recipe(bad)


def test_a_fine_tuned_world_plays_as_it_did_at_the_stages_context_noise(world_run, tmp_path):
    import yaml

    recipe, out, _ = world_run
    finished = tmp_path / "finished"
    shutil.copytree(out / "consistency" / "checkpoint", finished)
    config = yaml.safe_load((finished / "config.yaml").read_text())
    config["sampling"].update(hold_still=True, context_noise=0.2)
    (finished / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    adversarial = replace(recipe.adversarial, init=str(finished), steps=1, play_context_noise=0.1)
    unroll = replace(recipe.unroll, init=str(finished), steps=1, play_context_noise=0.05)
    for stage, tuned in (("adversarial", adversarial), ("unroll", unroll)):
        train(replace(recipe, **{stage: tuned}), stage, tmp_path / stage)
        sampling = load_checkpoint(tmp_path / stage / stage / "checkpoint").config.sampling
        assert sampling.hold_still and sampling.context_noise == tuned.play_context_noise


def test_a_memory_without_movement_is_refused(tmp_path):
    from worldsim.training.recipe import load_recipe

    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: bad\nworld: {movement: false, memory: {keyframes: 8}}\n")
    with pytest.raises(ConfigError, match="world.memory.keyframes.*world.movement: true"):
        load_recipe(recipe)


def test_the_world_scheme_trains_on_camera_recordings_and_needs_the_movement(smoke_recipe, tmp_path):
    from worldsim.runtime.session import WorldSession

    recipe = replace(smoke_recipe, data=replace(smoke_recipe.data, scheme="world"))
    with pytest.raises(ConfigError, match="world.movement.*conditions on the player's pose"):
        train(recipe, "all", tmp_path / "no-movement")
    recipe = replace(recipe, world=from_dict(WorldSpec, {"movement": True}))
    train(recipe, "vae", tmp_path / "run")
    path = train(recipe, "diffusion", tmp_path / "run")[0]
    checkpoint = load_checkpoint(path)
    assert checkpoint.config.encoding["type"] == "world" and checkpoint.memory is None
    session = WorldSession(checkpoint)
    session.reset()
    session.step(session.encode(np.zeros(4, np.float32)))
    assert session.player is not None


def test_a_pull_only_memory_is_saved_without_an_anchor_input(world_run, tmp_path):
    recipe, out, _ = world_run
    pull = from_dict(WorldSpec, {"movement": True, "memory": {"keyframes": 16, "cell": 48.0, "condition": False,
                                                              "pull": 0.3}})
    narrow = out / "vae" / "checkpoint"
    passed_on = replace(recipe, world=pull, unroll=replace(recipe.unroll, init=str(narrow), steps=0))
    checkpoint = load_checkpoint(train(passed_on, "unroll", tmp_path / "pull")[0])
    assert checkpoint.memory is not None and checkpoint.config.memory.pull == 0.3
    before = load_checkpoint(narrow).generator.config
    assert checkpoint.generator.config.token_cond_channels == before.token_cond_channels


def test_the_rollouts_of_a_pulling_world_are_pulled_as_at_play(world_run):
    import torch

    from worldsim.training.adversarial import student_rollout
    from worldsim.training.clips import Clip

    recipe, out, paths = world_run
    generator = load_checkpoint(paths[1]).generator.eval()
    g = generator.config
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, g.latent_channels, *g.latent_size, generator=gen)
    views = torch.randn(1, 4, g.latent_channels, *g.latent_size, generator=gen)
    clip = Clip(latents, torch.zeros(1, 4, g.frame_cond_dim), torch.zeros(1, 4, g.token_cond_channels, *g.grid), views)
    with torch.no_grad():
        free = student_rollout(generator, clip, gen=torch.Generator().manual_seed(1))
        pulled = student_rollout(generator, clip, gen=torch.Generator().manual_seed(1), pull=1.0)
        # a full pull: the first step's recycled frame is the view of frame 0, whatever the clip's first latent
        swapped = Clip(torch.randn_like(latents), clip.frame_cond, clip.token_cond, views)
        again = student_rollout(generator, swapped, gen=torch.Generator().manual_seed(1), pull=1.0)
    assert not torch.equal(free, pulled)
    torch.testing.assert_close(pulled, again)


def test_a_world_that_moves_its_views_in_pixels_is_trained_on_views_moved_so(world_run, tmp_path, monkeypatch):
    from worldsim.world import memory

    recipe, out, _ = world_run
    seen_from = memory.seen_from
    unroll = replace(recipe.unroll, init=str(out / "consistency" / "checkpoint"), steps=1)
    for pixel_views in (False, True):
        moved_by = []  # the VAE of each of the memory's calls (six arguments; the move inside, in pixels, has five)
        monkeypatch.setattr(memory, "seen_from", lambda *a, calls=moved_by: calls.append(a[5:]) or seen_from(*a))
        world = from_dict(WorldSpec, {**WORLD, "memory": {**WORLD["memory"], "pull": 0.4, "pixel_views": pixel_views}})
        train(replace(recipe, world=world, unroll=unroll), "unroll", tmp_path / str(pixel_views))
        # the pulled views go through the VAE only when the world moves them in pixels (the anchor never does)
        assert any(vae and vae[0] is not None for vae in moved_by) == pixel_views


def test_learned_movement_with_a_keys_scheme_is_a_clear_error(smoke_recipe):
    from worldsim.conditioning.scheme import load_scheme
    from worldsim.training.stages import model_configs

    recipe = replace(smoke_recipe, model=replace(smoke_recipe.model, yaw_reprojection=False),
                     world=from_dict(WorldSpec, {"movement": True}))
    with pytest.raises(ConfigError, match="world.movement.*needs the controls.*lacks"):
        model_configs(recipe, load_scheme("keys"))


def test_a_turning_world_is_continued_warped_by_the_recorded_moves_and_plays_warped(world_run, tmp_path,
                                                                                      monkeypatch):
    from worldsim.runtime.session import WorldSession
    from worldsim.training import unroll

    recipe, out, _ = world_run
    warps = []
    rollout = unroll.student_rollout
    monkeypatch.setattr(unroll, "student_rollout", lambda g, clip, **kw: warps.append(clip.warps) or
                        rollout(g, clip, **kw))
    turning = out / "consistency" / "checkpoint"
    assert load_checkpoint(turning).generator.config.yaw_reprojection
    warped = replace(recipe, model=replace(recipe.model, yaw_reprojection=False, warp=True),
                     unroll=replace(recipe.unroll, init=str(turning), steps=1))
    checkpoint = load_checkpoint(train(warped, "unroll", tmp_path / "warped")[0])
    g = checkpoint.generator.config
    assert g.yaw_reprojection == () and g.warp_fov == 90.0  # the camera scheme's calibrated fov
    (clip_warps,) = warps
    assert clip_warps.shape == (recipe.unroll.batch, recipe.unroll.clip_frames, 2, g.latent_size[1])
    unmoved = torch.arange(g.latent_size[1], dtype=clip_warps.dtype)
    assert not torch.equal(clip_warps[:, 1:, 0], unmoved.expand_as(clip_warps[:, 1:, 0]))  # the recorded moves
    session = WorldSession(checkpoint)
    session.reset()
    session.step(session.encode(np.array([1.0, 0.0, 1.0, 0.0], np.float32)))
    assert session.warped
    # the adversarial stage too: D starts from the run's diffusion weights, trained turning, and judges warped
    # previous frames (a D that turned them as well is refused by the clips); the long stage carries the warps on
    shutil.copytree(out / "diffusion" / "checkpoint", tmp_path / "warped" / "diffusion" / "checkpoint")
    adversarial = replace(warped, adversarial=replace(recipe.adversarial, init=str(turning), steps=1))
    train(adversarial, "adversarial", tmp_path / "warped")
    assert load_checkpoint(train(adversarial, "long", tmp_path / "warped")[0]).generator.config.warp_fov == 90.0
    # a world trained warped is not continued without the warp
    unwarped = replace(recipe, unroll=replace(recipe.unroll, init=str(checkpoint.path), steps=1))
    with pytest.raises(ConfigError, match="model.warp.*trained on recycled frames warped"):
        train(unwarped, "unroll", tmp_path / "unwarped")


def test_a_warp_with_the_yaw_turn_or_without_the_map_walls_is_refused(smoke_recipe):
    from worldsim.conditioning.scheme import load_scheme
    from worldsim.training.stages import model_configs

    scheme = load_scheme("camera")
    both = replace(smoke_recipe, model=replace(smoke_recipe.model, warp=True))
    with pytest.raises(ConfigError, match="model.yaw_reprojection.*turns the recycled frame as well"):
        model_configs(both, scheme)
    no_walls = replace(smoke_recipe, model=replace(smoke_recipe.model, warp=True, yaw_reprojection=False),
                       world=from_dict(WorldSpec, {"movement": True, "walls": False}))
    with pytest.raises(ConfigError, match="model.warp.*depth from the map's walls"):
        model_configs(no_walls, scheme)


def test_a_turning_world_can_be_continued_turning_its_recycled_frame_in_pixels(world_run, tmp_path, monkeypatch):
    from worldsim.runtime.session import WorldSession
    from worldsim.training import unroll

    recipe, out, _ = world_run
    vaes = []
    rollout = unroll.student_rollout
    monkeypatch.setattr(unroll, "student_rollout", lambda g, clip, **kw: vaes.append(clip.vae) or
                        rollout(g, clip, **kw))
    turning = out / "consistency" / "checkpoint"
    assert not load_checkpoint(turning).generator.config.turn_in_pixels
    in_pixels = replace(recipe, model=replace(recipe.model, turn_in_pixels=True),
                        unroll=replace(recipe.unroll, init=str(turning), steps=1))
    checkpoint = load_checkpoint(train(in_pixels, "unroll", tmp_path / "pixels")[0])
    assert checkpoint.generator.config.turn_in_pixels  # the same weights, the input turned in pixels
    (vae,) = vaes
    assert vae is not None  # the clips carry the VAE the rollout turns through
    session = WorldSession(checkpoint)
    assert session.turn_vae is session.vae
    # and back: a world continued without it turns in latent columns again
    latent = replace(recipe, unroll=replace(recipe.unroll, init=str(checkpoint.path), steps=1))
    assert not load_checkpoint(train(latent, "unroll", tmp_path / "latent")[0]).generator.config.turn_in_pixels


def test_a_turn_in_pixels_without_the_yaw_turn_is_refused(smoke_recipe):
    from worldsim.conditioning.scheme import load_scheme
    from worldsim.training.stages import model_configs

    recipe = replace(smoke_recipe, model=replace(smoke_recipe.model, yaw_reprojection=False, turn_in_pixels=True))
    with pytest.raises(ConfigError, match="model.turn_in_pixels.*yaw_reprojection is off"):
        model_configs(recipe, load_scheme("camera"))
