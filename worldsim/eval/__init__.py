"""Evaluation against the real engine: held-out ground truth, an inverse-dynamics judge, drift, reports.

    evaluate(checkpoint, out, EvalConfig(...), idm=..., ground_truth_dir=...) -> metrics   (evaluate.py)
    train_idm(dataset, out) -> IDM                                                          (idm.py)
    worldsim eval ...                                                                       (cli.py)
"""

from worldsim.eval.evaluate import EvalConfig, evaluate
from worldsim.eval.ground_truth import GroundTruthSpec, load_ground_truth
from worldsim.eval.idm import IDM, IDMConfig, IDMTrainConfig, load_idm, train_idm

__all__ = ["EvalConfig", "evaluate", "GroundTruthSpec", "load_ground_truth", "IDM", "IDMConfig",
           "IDMTrainConfig", "load_idm", "train_idm"]
