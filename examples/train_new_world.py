"""Record a small data set in ViZDoom and run every AAPT stage on it with the tiny `smoke` recipe (under a minute on
a laptop CPU; needs the [train] extra). For a real world use `assets/recipes/doom-camera.yaml` (hours on a CPU,
minutes on a GPU):

    worldsim record --env doom --episodes 120 --steps 800 --out data/doom-camera --seed 0 --val-fraction 0.05
    worldsim train --recipe doom-camera --stage all --out runs/doom-camera [--resume]
"""

from pathlib import Path

from worldsim.config import replace
from worldsim.training.recipe import load_recipe
from worldsim.training.stages import train

recipe = load_recipe("smoke")
recipe = replace(recipe, data=replace(recipe.data, dir="runs/example/data"))  # recorded here on first use
for checkpoint in train(recipe, "all", Path("runs/example"), resume=True):
    print("stage checkpoint:", checkpoint)
print("play it: worldsim play --checkpoint runs/example/long/checkpoint")
