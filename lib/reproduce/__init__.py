"""Re-derive the book: run every stage of ``lib.core.stages`` from the datasets into a scratch
folder and compare the new artifacts with ``results/``. Sits on top, like the CLI: it runs the
other packages' commands as processes and imports only ``lib.core``."""

COMMANDS = {
    "reproduce": ("lib.reproduce.cli", "rerun every stage the book needs from the datasets and compare each new "
                  "artifact with results/ (one table; exit 1 on any mismatch)"),
}
