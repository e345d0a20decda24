"""The cached step must equal the full block-causal recompute, including a sliding window and sink frames."""

import math

import pytest
import torch

from worldsim.models import generator as generator_module
from worldsim.models.generator import GENERATOR_PRESETS, Generator, GeneratorConfig, turn_columns
from worldsim.rollout import step_frame
from worldsim.testing import SpaceToDepth, perturb_


def make_generator(window: int, sink: int, token_channels: int = 2, frame_dim: int = 3,
                   view_channels: int = 0) -> Generator:
    """A tiny generator; the last `view_channels` of its token channels are an attended keyframe view."""
    torch.manual_seed(0)
    config = GeneratorConfig(latent_channels=4, latent_size=(4, 6), patch=2, frame_cond_dim=frame_dim,
                             token_cond_channels=token_channels, memory_channels=view_channels,
                             **{**GENERATOR_PRESETS["tiny"], "window": window, "sink": sink})
    g = Generator(config).eval()
    perturb_(g, scale=0.1)
    return g


def random_inputs(frames: int, batch: int = 2, token_channels: int = 2, frame_dim: int = 3):
    gen = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    return (r(batch, frames, 4, 4, 6), r(batch, frames, 4, 4, 6), r(batch, frames, token_channels, 2, 3),
            r(batch, frames, frame_dim), torch.rand(batch, frames, generator=gen),
            torch.rand(batch, frames, generator=gen))


@pytest.mark.parametrize("window,sink,view", [(3, 1, 0), (3, 0, 0), (3, 2, 0), (16, 1, 0), (1, 1, 0), (3, 1, 3),
                                             (3, 0, 3), (16, 1, 3)])
def test_cached_steps_equal_full_recompute(window, sink, view):
    g = make_generator(window, sink, token_channels=2 + view, view_channels=view)
    noisy, recycled, tokens, frame, t, aug = random_inputs(frames=10, token_channels=2 + view)
    with torch.no_grad():
        full = g(noisy, recycled, tokens, frame, t, aug)
        cache = g.new_cache(batch=2)
        steps = torch.stack([g.step(noisy[:, i], recycled[:, i], tokens[:, i], frame[:, i], t[:, i], aug[:, i], cache)
                             for i in range(10)], 1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-4)


def test_every_input_changes_the_output():
    g = make_generator(3, 1)
    inputs = list(random_inputs(frames=4))
    with torch.no_grad():
        base = g(*inputs)
        for i in range(len(inputs)):
            changed = list(inputs)
            changed[i] = inputs[i] + 0.5
            assert not torch.allclose(g(*changed)[:, -1], base[:, -1]), f"input {i} is ignored"


def test_frames_do_not_see_the_future():
    g = make_generator(4, 1)
    inputs = random_inputs(frames=6)
    changed = [x.clone() for x in inputs]
    for x in changed:
        x[:, 4:] += 1.0
    with torch.no_grad():
        a, b = g(*inputs), g(*changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_window_forgets_old_frames_but_keeps_the_sink():
    g = make_generator(window=2, sink=1)
    inputs = random_inputs(frames=6)
    for frame, should_matter in ((0, True), (2, False)):  # frame 0 is the sink; frame 2 left the window of frame 5
        changed = [x.clone() for x in inputs]
        for x in changed:
            x[:, frame] += 1.0
        with torch.no_grad():
            differs = not torch.allclose(g(*inputs)[:, 5], g(*changed)[:, 5])
        assert differs == should_matter


def test_multistep_sampling_keeps_one_cache_entry_per_frame():
    g = make_generator(3, 1)
    cache = g.new_cache(batch=1)
    latent = torch.zeros(1, 4, 4, 6)
    with torch.no_grad():
        for _ in range(5):
            latent = step_frame(g, cache, latent, torch.zeros(1, 3), torch.zeros(1, 2, 2, 3), torch.randn(1, 4, 4, 6),
                                steps=4, shift=3.0)
    assert cache.position == 5
    assert torch.isfinite(latent).all()


def test_untrained_residual_generator_copies_the_previous_frame():
    config = GeneratorConfig(latent_channels=4, latent_size=(4, 6), patch=2, frame_cond_dim=3, token_cond_channels=0,
                             residual=True, **GENERATOR_PRESETS["tiny"])
    g = Generator(config).eval()  # zero-initialised output layers
    previous = torch.randn(1, 4, 4, 6)
    with torch.no_grad():
        frame = step_frame(g, g.new_cache(), previous, torch.randn(1, 3), None, torch.randn(1, 4, 4, 6))
    torch.testing.assert_close(frame, previous)


def test_residual_generator_cache_matches_recompute():
    torch.manual_seed(0)
    config = GeneratorConfig(latent_channels=4, latent_size=(4, 6), patch=2, frame_cond_dim=3, token_cond_channels=2,
                             residual=True, **{**GENERATOR_PRESETS["tiny"], "window": 3})
    g = Generator(config).eval()
    perturb_(g, scale=0.1)
    noisy, recycled, tokens, frame, t, aug = random_inputs(frames=6)
    with torch.no_grad():
        full = g(noisy, recycled, tokens, frame, t, aug)
        cache = g.new_cache(batch=2)
        steps = torch.stack([g.step(noisy[:, i], recycled[:, i], tokens[:, i], frame[:, i], t[:, i], aug[:, i], cache)
                             for i in range(6)], 1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-4)


def render_panorama(yaw_degrees: float, width: int = 64, fov: float = 90.0) -> torch.Tensor:
    """(1, 2, 3, width) columns of a smooth 360-degree scene as a pinhole camera at `yaw_degrees` sees it."""
    half = math.tan(math.radians(fov) / 2)
    x = ((torch.arange(width, dtype=torch.float64) + 0.5) / width * 2 - 1) * half
    angle = torch.atan(x) + math.radians(yaw_degrees)
    scene = torch.stack([torch.sin(3 * angle), torch.cos(5 * angle)])  # (2, width)
    return scene[None, :, None, :].expand(1, 2, 3, width).float()


@pytest.mark.parametrize("yaw", [4.0, -6.0, 1.5])
def test_turn_columns_reprojects_a_pinhole_camera_turn(yaw):
    before, after = render_panorama(0.0), render_panorama(yaw)
    turned = turn_columns(before, torch.tensor([yaw]), 90.0)
    inside = slice(8, -8)  # away from the edge that comes into view
    error = (turned - after)[..., inside].abs().max()
    assert error < 0.02, error
    assert (before - after)[..., inside].abs().max() > 10 * error  # copying the frame is far worse


def test_turn_columns_without_yaw_is_the_identity():
    latent = torch.randn(2, 5, 4, 4, 6)
    torch.testing.assert_close(turn_columns(latent, torch.zeros(2, 5), 90.0), latent)


def test_reprojection_follows_the_configured_yaw_entry_and_is_off_by_default():
    base = dict(latent_channels=4, latent_size=(4, 6), patch=2, frame_cond_dim=3, token_cond_channels=0,
                residual=True, **GENERATOR_PRESETS["tiny"])
    latent, cond = torch.randn(1, 4, 4, 6), torch.tensor([[0.0, 0.0, 1.0]])
    assert Generator(GeneratorConfig(**base)).reproject(latent, cond) is latent
    g = Generator(GeneratorConfig(**base, yaw_reprojection=(2, 5.0, 90.0))).eval()
    torch.testing.assert_close(g.reproject(latent, cond), turn_columns(latent, torch.tensor([5.0]), 90.0))
    # an untrained residual generator now draws the turned previous frame
    with torch.no_grad():
        frame = step_frame(g, g.new_cache(), latent, cond, None, torch.randn(1, 4, 4, 6))
    torch.testing.assert_close(frame, turn_columns(latent, torch.tensor([5.0]), 90.0))


def pixel_turning_generator() -> Generator:
    """A residual generator that turns its recycled frame in pixels, with latents the SpaceToDepth stand-in VAE
    decodes to (3, 16, 32) pixels."""
    g = Generator(GeneratorConfig(latent_channels=48, latent_size=(4, 8), patch=2, frame_cond_dim=3,
                                  token_cond_channels=0, residual=True, yaw_reprojection=(2, 5.0, 90.0),
                                  turn_in_pixels=True, **GENERATOR_PRESETS["tiny"])).eval()
    return g


def test_a_generator_can_turn_its_recycled_frame_in_pixels_not_cross_faded_between_latent_columns(monkeypatch):
    g, vae = pixel_turning_generator(), SpaceToDepth()
    gen = torch.Generator().manual_seed(0)
    latent = torch.rand(2, 3, 48, 4, 8, generator=gen) * 2 - 1  # two sequences of three frames
    cond = torch.zeros(2, 3, 3)
    cond[:, 0, 2], cond[0, 2, 2], cond[1, 2, 2] = 0.3, -0.25, 0.1  # turns of a fraction of a latent column
    turned = g.reproject(latent, cond, vae)
    degrees = cond[..., 2] * 5.0
    expected = turn_columns(vae.decode(latent.flatten(0, 1)), degrees.flatten(), 90.0)  # the move made on pixels
    torch.testing.assert_close(vae.decode(turned.flatten(0, 1)), expected, atol=1e-5, rtol=0)
    assert torch.equal(turned[:, 1], latent[:, 1])  # a frame that does not turn keeps its latent exactly
    in_latents = vae.decode(turn_columns(latent, degrees, 90.0).flatten(0, 1))
    assert (in_latents - expected).abs().max() > 0.1  # turned in latent columns the pixels only cross-fade
    # an untrained residual generator draws the recycled frame turned so
    with torch.no_grad():
        frame = step_frame(g, g.new_cache(2), latent[:, 0], cond[:, 0], None, torch.randn(2, 48, 4, 8), vae=vae)
    torch.testing.assert_close(frame, turned[:, 0])
    # many frames are decoded a batch at a time, to the same result
    decoded = []
    decode = vae.decode
    monkeypatch.setattr(vae, "decode", lambda z: decoded.append(len(z)) or decode(z))
    monkeypatch.setattr(generator_module, "PIXEL_BATCH", 2)
    torch.testing.assert_close(g.reproject(latent, cond, vae), turned)
    assert decoded == [2, 2]  # the four frames that turn, two at a time


def test_a_generator_that_turns_in_pixels_needs_the_yaw_turn_and_the_vae():
    with pytest.raises(ValueError, match="turn_in_pixels .* needs yaw_reprojection"):
        GeneratorConfig(frame_cond_dim=3, turn_in_pixels=True)
    with pytest.raises(ValueError, match="turned in pixels .* needs the VAE"):
        pixel_turning_generator().reproject(torch.zeros(1, 48, 4, 8), torch.tensor([[0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("bad", [(2, 5.0), (3, 5.0, 90.0), (0.5, 5.0, 90.0), (2, 5.0, 180.0)])
def test_bad_yaw_reprojection_is_refused(bad):
    with pytest.raises(ValueError, match="yaw_reprojection"):
        GeneratorConfig(frame_cond_dim=3, yaw_reprojection=bad)


def test_the_keyframe_view_is_attended_by_its_own_frame_and_not_an_input():
    g = make_generator(3, 1, token_channels=5, view_channels=3)
    assert g.patch_in.in_features == 2 * 4 * 2 * 2 + 2  # noise, recycled and the 2 scheme channels only
    inputs = list(random_inputs(frames=5, token_channels=5))
    changed = [x.clone() for x in inputs]
    changed[2][:, 3, 2:] += 1.0  # frame 3's view
    with torch.no_grad():
        a, b = g(*inputs), g(*changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # earlier frames do not see it
    assert not torch.allclose(a[:, 3], b[:, 3])
    # the view is not stored: a frame after it, whose own view is the same, sees frame 3 only through frame 3's keys
    # and values, which the view does change (the network's hidden state at frame 3)
    assert not torch.allclose(a[:, 4], b[:, 4])


def test_a_generator_given_an_attended_view_keeps_what_it_had():
    narrow = make_generator(3, 1)
    wide = narrow.with_token_channels(5, memory_channels=3)
    assert wide.config.memory_channels == 3 and wide.patch_in.in_features == narrow.patch_in.in_features
    for name, value in narrow.state_dict().items():
        torch.testing.assert_close(wide.state_dict()[name], value)
    for block in wide.blocks:  # the view's values start at zero: it takes a share of attention, adds nothing
        assert not block.attn.memory_kv.weight[32:].any() and not block.attn.memory_kv.bias[32:].any()
    with pytest.raises(ValueError, match="attended view's kept"):
        wide.with_token_channels(6, memory_channels=4)
    with pytest.raises(ValueError, match="a new view made of new channels"):
        narrow.with_token_channels(5, memory_channels=4)  # 3 new channels cannot make a view of 4


def test_attended_view_channels_must_be_part_of_the_token_condition():
    with pytest.raises(ValueError, match="memory_channels 4 are the last"):
        GeneratorConfig(latent_channels=4, latent_size=(4, 6), patch=2, token_cond_channels=3, memory_channels=4)


def test_revealed_columns_are_zero_or_repeat_the_edge():
    latent = render_panorama(0.0)
    edge, zero = (turn_columns(latent, torch.tensor([20.0]), 90.0, reveal) for reveal in ("edge", "zero"))
    # turned right by 20 degrees: the last columns look past the old image's right edge
    assert not zero[..., -3:].any() and edge[..., -3:].abs().sum() > 0
    torch.testing.assert_close(zero[..., :40], edge[..., :40])  # what the old image saw is the same
    torch.testing.assert_close(turn_columns(latent, torch.tensor([0.0]), 90.0, "zero"), latent, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="reveal 'noise' is not one of"):
        GeneratorConfig(reveal="noise")
