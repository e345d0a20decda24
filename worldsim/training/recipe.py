"""Training recipes: one YAML file per world, one section per AAPT stage. Defaults are the paper's values where
the paper gives one (AAPT.md); a recipe for a small CPU world overrides what compute forces it to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from worldsim.config import ASSETS_DIR, ConfigError, from_dict, load_yaml, rng
from worldsim.world.memory import MemoryConfig

STAGES = ("vae", "diffusion", "consistency", "unroll", "adversarial", "long")


@dataclass(frozen=True)
class RecordSpec:
    """How to record the data set when `data.dir` does not exist yet (regenerated from a seed, never committed)."""

    episodes: int = field(default=8, metadata=rng(1, 100_000))
    steps: int = field(default=500, metadata=rng(2, 10_000_000))
    seed: int = 0
    doom: str = "freedoom2_map01"  # a config in assets/doom/ by name, or a path
    val_fraction: float = field(default=0.1, metadata=rng(0.0, 0.9))


@dataclass(frozen=True)
class DataSpec:
    dir: str = "data/doom-camera"
    scheme: str = "camera"
    record: RecordSpec | None = None


@dataclass(frozen=True)
class ModelSpec:
    generator: str = "world-s"  # a preset of worldsim.models.generator.GENERATOR_PRESETS
    generator_overrides: dict = field(default_factory=dict)
    vae: str = "world-s"  # a preset of worldsim.models.vae.VAE_PRESETS
    vae_overrides: dict = field(default_factory=dict)
    yaw_reprojection: bool = False  # turn the recycled frame by the commanded yaw (camera schemes; see GeneratorConfig)
    turn_in_pixels: bool = False  # that turn made on the decoded frame, encoded again (GeneratorConfig.turn_in_pixels)
    # warp the recycled frame by the move, turn included, with depth from the map's walls instead
    # (GeneratorConfig.warp_fov; needs world.movement and world.walls, and a camera scheme for the fov)
    warp: bool = False


@dataclass(frozen=True)
class WorldSpec:
    """The world's state beyond pixels (worldsim/world), learned from the recorded poses with the generator stages
    and saved in every checkpoint: the player's movement with the walkable map, and the posed keyframe memory the
    generator is conditioned on (`memory.keyframes` > 0; needs `movement`)."""

    movement: bool = False
    cell: float = field(default=8.0, metadata=rng(0.5, 10_000.0))  # map units per walkable-map cell
    max_hole: int = field(default=256, metadata=rng(0, 10_000_000))  # enclosed gaps (cells) taken as floor
    doors: bool = True  # the recording engine's doors (Doom maps) are walls until USE opens them
    walls: bool = True  # the recording engine's map walls (Doom maps) stop the player exactly
    physics: bool = True  # the recording engine's player physics per tic (Doom's) instead of a learned linear motion
    reach: float = field(default=64.0, metadata=rng(0.0, 100_000.0))  # map units the walkable area grows past the
    # recorded positions, up to the map's walls (with `walls`)
    memory: MemoryConfig = field(default_factory=MemoryConfig)


@dataclass(frozen=True)
class StageCommon:
    steps: int = field(default=1000, metadata=rng(0, 100_000_000))
    batch: int = field(default=8, metadata=rng(1, 65536))
    log_every: int = field(default=10, metadata=rng(1, 1_000_000))
    save_every: int = field(default=200, metadata=rng(1, 1_000_000))
    sample_every: int = field(default=0, metadata=rng(0, 1_000_000))  # 0: only at the end
    sample_frames: int = field(default=48, metadata=rng(2, 100_000))


@dataclass(frozen=True)
class VAEStage(StageCommon):
    init: str | None = None  # start from this checkpoint's VAE (same preset); with 0 steps it is used as it is
    lr: float = field(default=1e-3, metadata=rng(0.0, 1.0))
    kl_weight: float = field(default=1e-6, metadata=rng(0.0, 10.0))
    adversarial_weight: float = field(default=0.0, metadata=rng(0.0, 10.0))  # patch-GAN term for sharpness
    adversarial_start: int = field(default=0, metadata=rng(0, 100_000_000))
    val_frames: int = field(default=256, metadata=rng(1, 1_000_000))


@dataclass(frozen=True)
class DiffusionStage(StageCommon):
    clip_frames: int = field(default=9, metadata=rng(2, 4096))  # frames per window (the first is only recycled)
    lr: float = field(default=1e-5, metadata=rng(0.0, 1.0))
    weight_decay: float = field(default=0.01, metadata=rng(0.0, 10.0))
    shift: float = field(default=24.0, metadata=rng(0.01, 1000.0))
    recycle_noise: float = field(default=0.0, metadata=rng(0.0, 1.0))  # max noise level on the recycled frame
    warmup: int = field(default=0, metadata=rng(0, 1_000_000))
    init: str | None = None  # start from this checkpoint's generator (e.g. a bidirectional pre-trained model)


@dataclass(frozen=True)
class ConsistencyStage(StageCommon):
    clip_frames: int = field(default=9, metadata=rng(2, 4096))
    lr: float = field(default=1e-5, metadata=rng(0.0, 1.0))
    weight_decay: float = field(default=0.01, metadata=rng(0.0, 10.0))
    teacher_steps: int = field(default=32, metadata=rng(1, 1000))


@dataclass(frozen=True)
class UnrollStage(StageCommon):
    """Own-rollout regression (worldsim/training/unroll.py) between distillation and adversarial training.
    0 steps (the default): the stage passes the consistency checkpoint on unchanged."""

    steps: int = field(default=0, metadata=rng(0, 100_000_000))
    clip_frames: int = field(default=48, metadata=rng(2, 4096))  # frames rolled out open loop (the first is real)
    lr: float = field(default=1e-5, metadata=rng(0.0, 1.0))
    weight_decay: float = field(default=0.0, metadata=rng(0.0, 10.0))
    context_noise: float = field(default=0.0, metadata=rng(0.0, 1.0))  # max noise level on the recycled frames
    detach_every: int = field(default=8, metadata=rng(0, 4096))  # truncated back-propagation through the cache
    play_context_noise: float = field(default=0.0, metadata=rng(0.0, 1.0))  # the level the checkpoint plays at
    still_fraction: float = field(default=0.0, metadata=rng(0.0, 1.0))  # clips replaced by a still frame, no-op
    # learning rate of the inputs (0: `lr`): inputs new to a trained world (a keyframe memory's anchor, or the view
    # it attends to) start from zero weights (the view's values; its embedding and keys at random) and would barely
    # move at a fine-tuning rate
    input_lr: float = field(default=0.0, metadata=rng(0.0, 1.0))
    init: str | None = None  # start from this checkpoint instead of the consistency stage's


@dataclass(frozen=True)
class AdversarialStage(StageCommon):
    clip_frames: int = field(default=9, metadata=rng(2, 4096))
    forcing: Literal["student", "teacher"] = "student"
    lr_generator: float = field(default=3e-6, metadata=rng(0.0, 1.0))
    lr_discriminator: float = field(default=3e-6, metadata=rng(0.0, 1.0))
    rmsprop_alpha: float = field(default=0.9, metadata=rng(0.0, 1.0))
    r1_weight: float = field(default=1000.0, metadata=rng(0.0, 1e6))  # lambda of the approximated R1 and R2
    r1_sigma: float = field(default=0.1, metadata=rng(0.0, 10.0))
    regression_weight: float = field(default=0.0, metadata=rng(0.0, 1e6))  # optional L2 to the real clip
    discriminator_steps: int = field(default=1, metadata=rng(1, 100))  # D updates per G update
    # Stability levers (STABILITY.md): the L2 only on the first frames, where the real continuation is still
    # determined by the context (0: all frames); context noise on the recycled frames (max level per clip, told to
    # the generator) and the level the checkpoint then plays at; truncated back-propagation through the cache.
    regression_frames: int = field(default=0, metadata=rng(0, 4096))
    context_noise: float = field(default=0.0, metadata=rng(0.0, 1.0))
    play_context_noise: float = field(default=0.0, metadata=rng(0.0, 1.0))
    detach_every: int = field(default=0, metadata=rng(0, 4096))
    # clips replaced by one real frame repeated under the no-op (UnrollStage's): the discriminator sees them as real,
    # so a rollout that changes while nothing is pressed is told apart; the long stage takes none (0 there)
    still_fraction: float = field(default=0.0, metadata=rng(0.0, 1.0))
    input_lr: float = field(default=0.0, metadata=rng(0.0, 1.0))  # the inputs' rate (UnrollStage's; 0: lr_generator)
    init: str | None = None  # start G from this checkpoint (D from its generator, without a diffusion stage)
    # Action following (worldsim/training/adversarial.py `action_following_loss`): the weight of the frozen
    # inverse-dynamics judge's term and the judge's directory. Use another IDM than the one `worldsim eval` scores
    # with (`worldsim eval --train-idm --idm-seed 1 ...`), or the evaluation grades the generator on its own lesson.
    action_weight: float = field(default=0.0, metadata=rng(0.0, 1e6))
    action_judge: str | None = None

    def __post_init__(self) -> None:
        if self.action_weight > 0 and not self.action_judge:
            raise ValueError(f"action_weight {self.action_weight} needs action_judge: the directory of an IDM "
                             "trained on the recording (`worldsim eval --train-idm --data DATASET --idm DIR "
                             "--idm-seed 1`)")


@dataclass(frozen=True)
class LongStage(AdversarialStage):
    segments: int = field(default=4, metadata=rng(1, 10_000))  # segments of clip_frames generated per rollout
    overlap: int = field(default=1, metadata=rng(0, 4096))  # frames each scored segment shares with the previous

    def __post_init__(self) -> None:
        if self.action_weight:
            raise ValueError(f"long.action_weight {self.action_weight}: the long stage's extended segments have no "
                             "real continuation for the judge to read; use 0 (the term is the adversarial "
                             "stage's)")
        if self.still_fraction:
            raise ValueError(f"long.still_fraction {self.still_fraction}: the long stage extends clips with other "
                             "real clips' conditions and takes no still clips; use 0 (still clips are for the "
                             "unroll and adversarial stages)")


@dataclass(frozen=True)
class Budget:
    """How `worldsim train --time-budget` shares its time between the stages it runs, as fractions (normalised over
    those stages). Each stage gets its share of the time left when it starts, so a stage that finishes its steps
    early leaves its time to the stages after it; 0 runs a stage for no step (its checkpoint passes the previous
    one on)."""

    vae: float = field(default=0.1, metadata=rng(0.0, 1.0))
    diffusion: float = field(default=0.45, metadata=rng(0.0, 1.0))
    consistency: float = field(default=0.1, metadata=rng(0.0, 1.0))
    unroll: float = field(default=0.1, metadata=rng(0.0, 1.0))
    adversarial: float = field(default=0.2, metadata=rng(0.0, 1.0))
    long: float = field(default=0.05, metadata=rng(0.0, 1.0))


@dataclass(frozen=True)
class Recipe:
    name: str
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    world: WorldSpec = field(default_factory=WorldSpec)
    seed: int = 0
    bf16: bool = True  # autocast where the hardware supports it (CPU with AVX-512 bf16, CUDA)
    threads: int = field(default=0, metadata=rng(0, 1024))  # torch CPU threads; 0 = torch's default
    vae: VAEStage = field(default_factory=VAEStage)
    diffusion: DiffusionStage = field(default_factory=DiffusionStage)
    consistency: ConsistencyStage = field(default_factory=ConsistencyStage)
    unroll: UnrollStage = field(default_factory=UnrollStage)
    adversarial: AdversarialStage = field(default_factory=AdversarialStage)
    long: LongStage = field(default_factory=LongStage)
    budget: Budget = field(default_factory=Budget)


def recipe_path(name_or_path: str | Path) -> Path:
    shipped = ASSETS_DIR / "recipes" / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    path = Path(name_or_path)
    if not path.exists():
        names = ", ".join(p.stem for p in sorted((ASSETS_DIR / "recipes").glob("*.yaml")))
        raise ConfigError(path, "", "no such recipe file or shipped recipe", str(name_or_path),
                          f"{names}, or a path to a .yaml file")
    return path


def load_recipe(name_or_path: str | Path) -> Recipe:
    path = recipe_path(name_or_path)
    data = load_yaml(path)
    if isinstance(data, dict) and "name" not in data:
        data = {"name": path.stem, **data}
    recipe = from_dict(Recipe, data, file=path)
    if recipe.world.memory.enabled and not recipe.world.movement:
        raise ConfigError(path, "world.memory.keyframes", "a keyframe memory is retrieved by the player's pose, "
                          "which the learned movement tracks", recipe.world.memory.keyframes,
                          "0, or world.movement: true")
    return recipe
