"""How well a world's learned movement follows the engine's player on held-out sequences.

    position error  open loop from the engine's first pose with the recorded actions: distance (map units) to the
                    engine's position after 1, 10 and 60 s (episodes too short for a horizon are left out of it).
    heading error   the same, in degrees, after 10 s.
    mean error      the position error averaged over every frame of an episode (median and mean over episodes),
                    and the share of all frames the tracked pose is within NEAR_UNITS of the engine's: how much of
                    the play the world's memory and warp are read at the right place.
    wall contacts   the frames where the engine's player first runs into something: it was commanded to move
                    but moved less than half of what free motion would give (the model's free move from the
                    engine's state), after a frame that was not blocked. Caught when the model, stepped once from
                    the engine's state (its doors as the engine's player opened them), also moves less than half
                    of its free move.
    left walkable   the share of open-loop rollouts that ever leave the walkable area (the target is 0).
"""

from __future__ import annotations

import numpy as np

from worldsim.world.memory import wrap_degrees
from worldsim.world.movement import MovementModel

HORIZONS_S = (1, 10, 60)
BLOCKED_SHARE = 0.5  # a move under this share of the free move counts as blocked
MIN_FREE_MOVE = 1.0  # map units: commands that would move less are not tested for contact
NEAR_UNITS = 32.0  # map units: the keyframe memory's cell, the player's box side


def wall_contacts(movement: MovementModel, poses: np.ndarray, actions: np.ndarray) -> tuple[int, int]:
    """(contacts, caught) on one episode: poses (F + 1, 3), actions (F + 1, A), actions[t] produced poses[t]."""
    contacts = caught = 0
    was_blocked = True  # a contact is the first blocked frame after a free one
    doors = movement.doors_along(poses, actions)  # the doors as the engine's player opened them
    for t in range(1, len(poses)):
        state = movement.along(poses, actions, t - 1, doors[t - 1])
        _, free = movement.free_move(state, actions[t])
        free_norm = float(np.linalg.norm(free))
        if free_norm < MIN_FREE_MOVE:
            was_blocked = False
            continue
        engine_move = float(np.linalg.norm(poses[t, :2] - poses[t - 1, :2]))
        blocked = engine_move < BLOCKED_SHARE * free_norm
        if blocked and not was_blocked:
            contacts += 1
            model = movement.step(state, actions[t])
            caught += int(np.hypot(model.x - state.x, model.y - state.y) < BLOCKED_SHARE * free_norm)
        was_blocked = blocked
    return contacts, caught


def movement_metrics(movement: MovementModel, episodes: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     fps: float) -> dict:
    """episodes: [(engine poses (F + 1, 3), actions (F + 1, A), tracked open-loop poses (F, 3))]."""
    errors: dict[str, list[float]] = {f"{h}s": [] for h in HORIZONS_S}
    heading_errors, left, contacts, caught, along = [], 0, 0, 0, []
    for poses, actions, tracked in episodes:
        along.append(np.linalg.norm(tracked[:, :2] - poses[1:len(tracked) + 1, :2], axis=1))
        for h in HORIZONS_S:
            frame = int(round(h * fps))
            if frame <= len(tracked):
                errors[f"{h}s"].append(float(np.linalg.norm(tracked[frame - 1, :2] - poses[frame, :2])))
        frame = min(int(round(10 * fps)), len(tracked))
        heading_errors.append(float(abs(wrap_degrees(tracked[frame - 1, 2] - poses[frame, 2]))))
        left += int(not movement.walkable.contains(tracked[:, :2]).all())
        n, k = wall_contacts(movement, poses, actions)
        contacts, caught = contacts + n, caught + k
    return {
        "position_error": {h: {"median": float(np.median(v)), "mean": float(np.mean(v)), "episodes": len(v)}
                           for h, v in errors.items() if v},
        "mean_error": {"median": float(np.median([e.mean() for e in along])),
                       "mean": float(np.mean([e.mean() for e in along])),
                       "frames_near": float(np.mean(np.concatenate(along) < NEAR_UNITS))} if along else None,
        "heading_error_10s": float(np.median(heading_errors)),
        "wall_contacts": contacts,
        "wall_contacts_caught": caught / contacts if contacts else None,
        "left_walkable": left / len(episodes) if episodes else None,
        "engine_inside_walkable": float(np.mean([movement.walkable.contains(p[:, :2]).mean() for p, _, _ in episodes])),
    }
