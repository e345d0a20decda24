"""Exploration policies: scripted players that walk a map the way a person would, for recording training data.

A policy returns the conditioning scheme's action vector each frame. `ExplorePolicy` holds an *intent* (walk,
walk while turning, turn in place, strafe, back up, stop) for several frames, like a person holding keys, then
picks the next one. Turning is frequent and strong on purpose: the world model must learn that yaw rotates the
view. When it is blocked (it moves much less than its command asks, judged against the fastest it has moved
per unit of command so far, or barely at all), it presses USE once (doors open that way in Doom) and, if still
blocked, turns well away and walks off. Occasional USE presses on the way open the doors it walks into.

The intent is a target (forward, strafe, yaw) in [-1, 1]:
  - camera scheme: the command eases towards the target each frame and carries a little Ornstein-Uhlenbeck
    jitter, so analog values vary smoothly and cover many magnitudes, not just +-1;
  - keys scheme: the target's signs become held keys (multi-hot), so presses last for the whole intent.
Everything is drawn from one `numpy.random.Generator` seeded in `reset(seed)`: the same seed gives the same
actions for the same poses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from worldsim.conditioning import Scheme
from worldsim.config import rng, to_dict

INTENTS = ("walk", "walk_turn", "turn", "strafe", "back", "stop")
DEFAULT_INTENT_WEIGHTS = {"walk": 0.35, "walk_turn": 0.25, "turn": 0.15, "strafe": 0.1, "back": 0.05,
                          "stop": 0.1}
UNSTICK_TURN_FRAMES = (20, 45)  # a blocked explorer turns away this long (camera scheme: 50-180 degrees)
KEY_THRESHOLD = 0.2  # |target| from which the keys scheme holds a key: slight drift while walking is none
CAMERA_AXES = ("forward", "strafe", "yaw", "use")

# keys-scheme action -> (intent axis, sign); axes: 0 forward, 1 strafe (+ right), 2 yaw (+ right), 3 use.
KEY_INTENTS: dict[str, tuple[int, int]] = {
    "forward": (0, 1), "back": (0, -1), "strafe_left": (1, -1), "strafe_right": (1, 1),
    "turn_left": (2, -1), "turn_right": (2, 1), "use": (3, 1),
}


class StopRecording(Exception):
    """Raised by `Policy.act` when the player quits: the recorder keeps what was played and stops."""


class Policy(Protocol):
    """Anything that plays: scripted explorers, a person at the keyboard, a replayed log."""

    name: str

    def reset(self, seed: int) -> None: ...

    def act(self, frame: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """The scheme's action (A,) float32 for the next step, given the current frame and pose."""
        ...

    def metadata(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ExploreConfig:
    """How the scripted explorer behaves. Counts are recorded frames (17.5 per second at frame skip 2)."""

    intent_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_INTENT_WEIGHTS))
    hold_min: int = field(default=4, metadata=rng(1, 1000))  # frames an intent is held, drawn uniformly
    hold_max: int = field(default=30, metadata=rng(1, 1000))
    ease: float = field(default=0.35, metadata=rng(0.01, 1.0))  # per-frame approach to the target (1: jump)
    jitter: float = field(default=0.05, metadata=rng(0.0, 1.0))  # stationary std of the analog OU noise
    jitter_decay: float = field(default=0.8, metadata=rng(0.0, 0.999))  # OU noise kept per frame
    use_probability: float = field(default=0.02, metadata=rng(0.0, 1.0))  # chance of a USE press per frame
    # Blocked: over `stuck_frames` frames of trying to move, moved less than `stuck_distance` map units or
    # less than `stuck_ratio` of what the command asks. Tuned on freedoom2 MAP01 (8 episodes x 1,000 frames):
    # against the distance test alone, a quarter fewer frames staring at a wall, similar ground covered.
    stuck_frames: int = field(default=8, metadata=rng(2, 1000))
    stuck_distance: float = field(default=2.0, metadata=rng(0.0, 1000.0))
    stuck_ratio: float = field(default=0.2, metadata=rng(0.0, 1.0))

    def __post_init__(self) -> None:
        unknown = [k for k in self.intent_weights if k not in INTENTS]
        if unknown:
            raise ValueError(f"unknown intent {unknown[0]!r} in intent_weights; "
                             f"allowed: {', '.join(INTENTS)}")
        weights = self.intent_weights.values()
        if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
            raise ValueError("intent_weights must be non-negative numbers with a positive sum")
        if self.hold_min > self.hold_max:
            raise ValueError(f"hold_min ({self.hold_min}) must not exceed hold_max ({self.hold_max})")


class ExplorePolicy:
    """Seeded scripted exploration for any camera or keys scheme (see the module docstring)."""

    name = "explore"

    def __init__(self, scheme: Scheme, config: ExploreConfig | None = None, seed: int = 0):
        self.scheme = scheme
        self.config = config or ExploreConfig()
        names = scheme.control_names
        self._analog = scheme.encoding_config.type in ("camera", "world")
        if self._analog:
            self._slots = [(names.index(n), axis, 1) for axis, n in enumerate(CAMERA_AXES)]
        else:  # keys: actions named like an intent follow it; others (attack, run) stay released
            self._slots = [(i, *KEY_INTENTS[n]) for i, n in enumerate(names) if n in KEY_INTENTS]
        self._action_dim = len(names)
        weights = np.array([self.config.intent_weights.get(k, 0.0) for k in INTENTS], dtype=np.float64)
        self._intent_p = weights / weights.sum()
        self.reset(seed)

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "config": to_dict(self.config)}

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._target = np.zeros(3)  # (forward, strafe, yaw) the current intent aims for
        self._command = np.zeros(3)  # what the analog scheme sends now (eases to the target)
        self._noise = np.zeros(3)
        self._hold = 0  # frames left in the current intent
        self._moves: list[float] = []  # distance moved per frame while trying to move
        self._asked: list[float] = []  # translation command magnitude on those frames
        self._unit_speed = 0.0  # fastest distance per frame per unit of command seen this episode
        self._last_pose: np.ndarray | None = None
        self._after_turn: str | None = None  # intent forced after the current one (walk off after unsticking)
        self._tried_use = False  # the last stuck response was USE: next time, turn away

    def act(self, frame: np.ndarray, pose: np.ndarray) -> np.ndarray:
        c, r = self.config, self._rng
        use = r.random() < c.use_probability
        # 1. blocked: trying to move, but moving far less than the command asks for `stuck_frames` frames
        asked = float(np.hypot(self._command[0], self._command[1])) if self._analog else \
            float(np.hypot(np.sign(self._target[0]), np.sign(self._target[1])))
        if self._last_pose is not None and asked > KEY_THRESHOLD:
            moved = float(np.hypot(*(pose[:2] - self._last_pose[:2])))
            self._moves.append(moved)
            self._asked.append(asked)
            self._unit_speed = max(self._unit_speed, moved / asked)
        else:
            self._moves.clear()
            self._asked.clear()
        self._last_pose = np.array(pose, dtype=np.float64)
        if len(self._moves) >= c.stuck_frames and self._blocked():
            self._moves.clear()
            self._asked.clear()
            if self._tried_use:  # USE opened nothing: turn well away, then walk off
                self._start("turn", hold=int(r.integers(*UNSTICK_TURN_FRAMES)), strong=True)
                self._after_turn = "walk"
            else:  # perhaps a door: press USE and keep pushing
                use, self._tried_use = True, True
        # 2. a new intent when the current one runs out
        if self._hold <= 0:
            forced, self._after_turn = self._after_turn, None
            self._start(forced or INTENTS[r.choice(len(INTENTS), p=self._intent_p)])
        self._hold -= 1
        # 3. the command: analog eases to the target with OU jitter on the active axes; keys hold its signs
        if self._analog:
            kick = c.jitter * math.sqrt(1 - c.jitter_decay**2)
            self._noise = c.jitter_decay * self._noise + kick * r.normal(size=3)
            self._command += c.ease * (self._target - self._command)
            values = np.clip(self._command + self._noise * (self._target != 0), -1.0, 1.0)
        else:
            values = np.where(np.abs(self._target) > KEY_THRESHOLD, np.sign(self._target), 0.0)
        intent = (*values, 1.0 if use else 0.0)
        action = np.zeros(self._action_dim, dtype=np.float32)
        for index, axis, sign in self._slots:
            value = intent[axis] * sign
            action[index] = value if self._analog else float(value > 0)
        return action

    def _blocked(self) -> bool:
        n = self.config.stuck_frames
        moved = sum(self._moves[-n:])
        expected = sum(self._asked[-n:]) * self._unit_speed
        return moved < self.config.stuck_distance or moved < self.config.stuck_ratio * expected

    def _start(self, intent: str, hold: int | None = None, strong: bool = False) -> None:
        """Pick the target of a new intent, held for `hold` frames (drawn when not given)."""
        c, r = self.config, self._rng
        self._hold = hold if hold is not None else int(r.integers(c.hold_min, c.hold_max + 1))
        side = 1.0 if r.random() < 0.5 else -1.0  # symmetric turns and strafes: yaw stays unbiased
        forward = strafe = yaw = 0.0
        if intent == "walk":
            forward, yaw = r.uniform(0.4, 1.0), r.normal(0.0, 0.1)  # nobody walks perfectly straight
        elif intent == "walk_turn":
            forward, yaw = r.uniform(0.3, 1.0), side * r.uniform(0.2, 1.0)
        elif intent == "turn":
            yaw = side * (r.uniform(0.6, 1.0) if strong else r.uniform(0.25, 1.0))
        elif intent == "strafe":
            strafe = side * r.uniform(0.4, 1.0)
            forward = r.uniform(0.3, 1.0) if r.random() < 0.4 else 0.0
        elif intent == "back":
            forward, yaw = -r.uniform(0.3, 0.8), r.normal(0.0, 0.3)
        self._target = np.array([forward, strafe, float(np.clip(yaw, -1.0, 1.0))])
        self._tried_use = False
        self._moves.clear()
        self._asked.clear()
