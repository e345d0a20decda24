import torch

from worldsim.models.generator import GENERATOR_PRESETS, Generator, GeneratorConfig
from worldsim.rollout import step_frame
from worldsim.testing import perturb_


def tiny():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(latent_channels=4, latent_size=(4, 6), patch=2, frame_cond_dim=3,
                                     token_cond_channels=0, **GENERATOR_PRESETS["tiny"])).eval()
    perturb_(g, scale=0.1)
    return g


def roll(g, cache, latent, frames, seed):
    gen = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for _ in range(frames):
            latent = step_frame(g, cache, latent, torch.ones(1, 3), None, torch.randn(1, 4, 4, 6, generator=gen))
            out.append(latent)
    return torch.stack(out)


def test_memory_is_bounded_by_construction():
    g = tiny()
    cache = g.new_cache()
    before = cache.nbytes()
    roll(g, cache, torch.zeros(1, 4, 4, 6), 50, 0)
    cache.position = 100_000  # far-away positions must work and use the same memory
    roll(g, cache, torch.zeros(1, 4, 4, 6), 5, 0)
    assert cache.nbytes() == before
    assert cache.k.shape[3] == (g.config.window + g.config.sink) * g.config.tokens


def test_snapshot_restore_reproduces_frames_and_branches():
    g = tiny()
    cache = g.new_cache()
    start = roll(g, cache, torch.zeros(1, 4, 4, 6), 6, 0)[-1]
    snap = cache.snapshot()
    a = roll(g, cache, start, 5, 1)
    cache.restore(snap)
    b = roll(g, cache, start, 5, 1)
    cache.restore(snap)
    c = roll(g, cache, start, 5, 2)  # a different branch from the same point
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_reset_starts_over():
    g = tiny()
    cache = g.new_cache()
    a = roll(g, cache, torch.zeros(1, 4, 4, 6), 7, 0)
    cache.reset()
    b = roll(g, cache, torch.zeros(1, 4, 4, 6), 7, 0)
    assert torch.equal(a, b)


def test_differentiable_cache_carries_gradients_to_earlier_frames():
    g = tiny()
    cache = g.new_cache(differentiable=True)
    first = torch.zeros(1, 4, 4, 6, requires_grad=True)
    latent = step_frame(g.train(), cache, first, torch.ones(1, 3), None, torch.randn(1, 4, 4, 6))
    for _ in range(3):  # recycled input detached: only the cache links the frames
        latent = step_frame(g, cache, latent.detach(), torch.ones(1, 3), None, torch.randn(1, 4, 4, 6))
    latent.sum().backward()
    assert first.grad is not None and first.grad.abs().sum() > 0
