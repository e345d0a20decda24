"""Adaptive pacing: a generator slower than the target gets an even, lower frame rate; faster again, it climbs."""

from worldsim.runtime.pacing import FramePacer, PacingConfig

CONFIG = PacingConfig(min_fps=5.0, window_frames=10)


def feed(pacer: FramePacer, work_s: float, frames: int) -> float:
    fps = pacer.fps
    for _ in range(frames):
        fps = pacer.add(work_s)
    return fps


def test_keeps_the_target_while_frames_fit():
    pacer = FramePacer(24.0, CONFIG)
    assert feed(pacer, 0.030, 50) == 24.0 and not pacer.behind and pacer.changes == 0


def test_drops_to_a_rate_the_machine_sustains_then_climbs_back_slowly():
    pacer = FramePacer(24.0, CONFIG)
    fps = feed(pacer, 0.060, 10)  # 60 ms frames cannot make 24 fps (41.7 ms)
    assert 12.0 < fps < 1 / 0.060 and pacer.behind
    assert feed(pacer, 0.060, 30) == fps  # stable: no oscillation while the work stays the same
    rates = [feed(pacer, 0.010, 10) for _ in range(12)]
    assert rates == sorted(rates) and rates[0] < 24.0 and rates[-1] == 24.0  # step by step, up to the target
    assert not pacer.behind


def test_a_few_slow_frames_do_not_move_the_aim():
    pacer = FramePacer(24.0, CONFIG)
    for i in range(30):
        pacer.add(0.2 if i % 10 == 0 else 0.02)  # one hiccup per window: below the 90th percentile
    assert pacer.fps == 24.0


def test_never_below_the_floor_and_off_when_not_adaptive_or_unthrottled():
    assert feed(FramePacer(24.0, CONFIG), 1.0, 10) == 5.0
    assert feed(FramePacer(24.0, PacingConfig(adaptive=False)), 1.0, 100) == 24.0
    assert feed(FramePacer(0.0, CONFIG), 1.0, 100) == 0.0


def test_the_loop_aims_lower_when_the_generator_is_slow_and_still_polls_every_frame(make_loop, monkeypatch):
    import time

    import pygame

    from worldsim.input.devices import LiveInput

    loop = make_loop(LiveInput(gamepads=False), fps=200.0, profile_changes={"pacing": CONFIG})
    step = loop.session.step

    def slow_step(condition):
        time.sleep(0.02)  # 20 ms: a 200 fps target (5 ms) cannot be met
        return step(condition)

    monkeypatch.setattr(loop.session, "step", slow_step)
    polled = []
    real_get = pygame.event.get
    monkeypatch.setattr(pygame.event, "get", lambda: polled.append(1) or real_get())
    for _ in range(20):
        loop.frame()
    assert len(polled) == 20  # input is read every frame
    assert loop.pacer.behind and 5.0 <= loop.pacer.fps < 1 / 0.02
    assert loop.stats()["pacing"]["changes"] >= 1
