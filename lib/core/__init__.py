"""What every part uses: datasets and their verification, downloads, weights, artifacts,
provenance, devices, errors. Imports nothing else from ``lib``."""

# ``python -m lib`` commands: name -> (module with add_arguments/run, help).
COMMANDS = {
    "data": ("lib.core.data_cli", "fetch and verify every dataset (CIFAR-10, MovieLens)"),
}
