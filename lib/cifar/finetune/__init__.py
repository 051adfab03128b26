"""Chapter 2: finetune an ImageNet-pretrained backbone on CIFAR-10, split by concern:
``recipe`` (hyperparameters, run options, device), ``model`` (network, optimiser, schedule), ``data`` (splits and
batched augmentation), ``engine`` (``train_one_epoch``, ``evaluate``), ``checkpoint``
(save/resume), ``loop`` (one run), ``outputs`` (artifacts), ``pilot`` and ``cli``."""
from lib.cifar.finetune.checkpoint import load_checkpoint, save_checkpoint
from lib.cifar.finetune.data import Splits, augment, prepare_splits, split_indices, step_generator
from lib.cifar.finetune.engine import EpochProgress, evaluate, train_one_epoch
from lib.cifar.finetune.loop import TrainOutcome, train
from lib.cifar.finetune.outputs import flip_examples, write_gallery, write_run_artifacts
from lib.cifar.finetune.pilot import pilot
from lib.cifar.finetune.model import (FinetuneNet, build_model, build_optimizer, build_scheduler,
                                      count_parameters)
from lib.cifar.finetune.recipe import (CHECKPOINT_FORMAT, N_CLASSES, REFERENCE_BATCH, Context, Recipe, RunOptions,
                                       config_diff)

__all__ = ["CHECKPOINT_FORMAT", "N_CLASSES", "REFERENCE_BATCH", "Context", "EpochProgress", "FinetuneNet",
           "Recipe", "RunOptions", "Splits", "TrainOutcome", "augment", "build_model", "build_optimizer",
           "build_scheduler", "config_diff", "count_parameters", "evaluate", "flip_examples",
           "load_checkpoint", "pilot", "prepare_splits", "save_checkpoint", "split_indices",
           "step_generator", "train", "train_one_epoch", "write_gallery", "write_run_artifacts"]
