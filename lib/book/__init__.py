"""What the chapters call: one module per chapter returning finished figures, tables and
values for inline text, plus the summary, notebook export, reproducibility appendix and
formatting helpers. Reads frozen artifacts through ``lib.core``."""

# ``python -m lib`` commands: name -> (module with add_arguments/run, help).
COMMANDS = {
    "notebooks": ("lib.book.notebooks", "export chapters to executed notebooks plus notebooks/submission.ipynb"),
}
