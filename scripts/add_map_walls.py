"""Give a trained world's movement the walls (and doors) of the map its data was recorded on, or the recording
engine's player physics, without refitting.

    python3 scripts/add_map_walls.py CHECKPOINT_DIR --data DATA_DIR [--reach 64] [--out FILE]
    python3 scripts/add_map_walls.py CHECKPOINT_DIR --data DATA_DIR --physics [--out FILE]

What `worldsim train` does with `world.walls: true` for a new training, for a checkpoint trained before: the
walkable area it learned is bounded by the map's walls and grows `--reach` map units up to them
(`WalkableMap.with_walls`), and the doors are marked on the new grid. The motion and the turn are kept.
With `--physics` (what `world.physics: true` does): the learned linear motion is replaced by the engine's per-tic
player physics (`TicPhysics`, Doom's), the walkable area, walls, doors and turn are kept.
Writes `--out` (default: the checkpoint's movement.safetensors.with-walls or .with-physics; rename it over
movement.safetensors to use it).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from worldsim.data.doom import recorded_doors, recorded_physics, recorded_walls
from worldsim.data.storage import DatasetIndex
from worldsim.errors import WorldsimError
from worldsim.world.doors import Doors
from worldsim.world.movement import MovementModel, TicPhysics
from worldsim.world.walls import Walls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint directory with a movement.safetensors")
    parser.add_argument("--data", type=Path, required=True, help="the data set the world was trained on")
    parser.add_argument("--reach", type=float, default=64.0, help="map units the area grows past the recordings")
    parser.add_argument("--physics", action="store_true", help="replace the learned motion with the recording "
                        "engine's per-tic player physics instead (the walls are kept as they are)")
    parser.add_argument("--out", type=Path, help="file to write (default: next to the checkpoint's movement)")
    args = parser.parse_args()
    source = args.checkpoint / "movement.safetensors"
    out = args.out or source.with_name("movement.safetensors." + ("with-physics" if args.physics else "with-walls"))
    try:
        if not source.is_file():
            raise WorldsimError(f"{source} not found: the checkpoint has no learned movement")
        if out.exists():
            raise WorldsimError(f"{out} exists; move it away or pass another --out")
        tensors = load_file(str(source))
        metadata = DatasetIndex.load(args.data).episodes[0].metadata
        movement = MovementModel.from_tensors(tensors, ("forward", "strafe", "yaw", "use"))
        if args.physics:
            return _write_physics(movement, recorded_physics(metadata), tensors, out)
        learned = dataclasses.replace(movement.walkable, doors=None, walls=None)
        walkable, doors = Doors.build(recorded_doors(metadata), learned.with_walls(Walls(recorded_walls(metadata)),
                                                                                  args.reach),
                                         int(metadata.get("frame_skip", 2)))
        walled = MovementModel(movement.motion, movement.turn_gain, walkable, movement.controls, doors)
    except WorldsimError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kept = {k: v for k, v in tensors.items() if not k.startswith(("walkable.", "doors.", "motion", "turn_gain"))}
    save_file({**walled.to_tensors(), **kept}, str(out))
    print(f"wrote {out}: {len(walkable.walls)} walls, {int(walkable.grid.sum())} walkable cells "
          f"(was {int(movement.walkable.grid.sum())}), {len(doors)} doors")
    return 0


def _write_physics(movement: MovementModel, physics: TicPhysics | None, tensors: dict, out: Path) -> int:
    if physics is None:
        print("error: the data was not recorded with a camera encoding, so there are no engine move deltas to "
              "integrate; --physics needs a camera or world scheme", file=sys.stderr)
        return 2
    moved = MovementModel(None, movement.turn_gain, movement.walkable, movement.controls, movement.doors, physics)
    kept = {k: v for k, v in tensors.items() if not k.startswith(("motion", "physics."))}
    save_file({**kept, **moved.to_tensors()}, str(out))
    print(f"wrote {out}: {physics.tics_per_frame} tics a frame, friction {physics.friction:g}, "
          f"{physics.move_units[0]:g} / {physics.move_units[1]:g} move units at forward / strafe 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
