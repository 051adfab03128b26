"""Chapter 2: finetune an ImageNet-pretrained backbone on CIFAR-10, in the shape of torchvision's
classification reference: ``recipe`` (hyperparameters, run options, device; network, optimiser,
schedule), ``data`` (splits and batched augmentation: the images as a data source), ``partial``
(``--trainable-stages``: the frozen trunk's cached activations as a data source), ``train``
(``train_one_epoch``, ``evaluate``, checkpoints, ``fit``) and ``cli`` (the command, the pilot and
what they write)."""
from lib.cifar.finetune.data import Splits, augment, prepare_splits, split_indices, step_generator
from lib.cifar.finetune.recipe import (CHECKPOINT_FORMAT, N_CLASSES, REFERENCE_BATCH, Context, FinetuneNet, Recipe,
                                       RunOptions, build_model, build_optimizer, build_scheduler, config_diff,
                                       count_parameters)
from lib.cifar.finetune.train import (TrainOutcome, evaluate, fit, load_checkpoint, save_checkpoint,
                                      train_one_epoch)

__all__ = ["CHECKPOINT_FORMAT", "N_CLASSES", "REFERENCE_BATCH", "Context", "FinetuneNet", "Recipe", "RunOptions",
           "Splits", "TrainOutcome", "augment", "build_model", "build_optimizer", "build_scheduler", "config_diff",
           "count_parameters", "evaluate", "fit", "load_checkpoint", "prepare_splits", "save_checkpoint",
           "split_indices", "step_generator", "train_one_epoch"]
