"""The one Trainer, for a CPU, one GPU or torchrun (DDP, FSDP2, tensor and pipeline parallelism over a
DeviceMesh: train/mesh.py): optimizer, schedules, precision, accumulation, checkpoints with exact resume,
evaluation and experiment tracking.

    slm train configs/demo.yaml train.max_steps=200
    torchrun --nproc_per_node=2 -m slmkit train configs/demo.yaml train.parallel=fsdp
    torchrun --nproc_per_node=4 -m slmkit train configs/stories15m.yaml train.mesh="dp=2,tp=2"

    from slmkit.train import load_run_config, train
    result = train(load_run_config("configs/demo.yaml", ["train.max_steps=200"]))
"""

from slmkit.train.config import RunConfig, TrainConfig, load_run_config
from slmkit.train.run import train, train_from_recipe
from slmkit.train.schedules import Schedule, make_schedule
from slmkit.train.trainer import Trainer, TrainingDiverged

__all__ = ["RunConfig", "Schedule", "TrainConfig", "Trainer", "TrainingDiverged", "load_run_config",
           "make_schedule", "train", "train_from_recipe"]
