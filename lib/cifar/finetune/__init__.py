"""Chapter 2: finetune an ImageNet-pretrained backbone on CIFAR-10, in the shape of torchvision's
classification reference: ``recipe``, ``data`` (images) or ``partial`` (cached activations), ``train``, ``cli``."""
from lib.cifar.finetune.data import Splits, augment, prepare_splits, step_generator
from lib.cifar.finetune.recipe import (N_CLASSES, Context, FinetuneNet, Recipe, RunOptions, build_model,
                                       build_optimizer, build_scheduler, config_diff)
from lib.cifar.finetune.train import evaluate, fit, train_one_epoch

__all__ = ["N_CLASSES", "Context", "FinetuneNet", "Recipe", "RunOptions", "Splits", "augment", "build_model",
           "build_optimizer", "build_scheduler", "config_diff", "evaluate", "fit", "prepare_splits",
           "step_generator", "train_one_epoch"]
