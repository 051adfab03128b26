"""``python -m lib verify``: re-derive what this machine can of every artifact and compare.

Uses ``lib.cifar``, ``lib.movies`` and ``lib.book``; nothing imports it but the CLI.
"""

# ``python -m lib`` commands: name -> (module with add_arguments/run, help).
COMMANDS = {
    "verify": ("lib.verify.cli",
               "re-derive each artifact's numbers on this machine and compare (exit 1 on a mismatch)"),
}
