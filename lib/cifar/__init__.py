"""CIFAR-10 transfer learning (chapters 1-2): backbones, feature extraction, linear probe,
finetuning, gallery and metrics. Uses ``lib.core`` only."""

# ``python -m lib`` commands: name -> (module with add_arguments/run, help).
COMMANDS = {
    "features": ("lib.cifar.features", "extract pretrained features and fit the logistic regression (chapter 1)"),
    "finetune": ("lib.cifar.finetune.cli", "finetune the pretrained network on CIFAR-10 (chapter 2)"),
    "probe-variants": ("lib.cifar.probe_variants",
                       "the linear probe with flips, label smoothing and several validation splits (chapter 2)"),
    "gallery-sprites": ("lib.cifar.gallery_sprites",
                        "pixels and index of the test images the HTML gallery browser shows (chapters 1-2)"),
}
