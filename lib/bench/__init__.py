"""Benchmarks of the fast paths against textbook baselines (performance appendix)."""

# ``python -m lib`` commands: name -> (module with add_arguments/run, help).
COMMANDS = {
    "bench": ("lib.bench.cli", "benchmark fast paths against baselines (appendix)"),
    "bench-scale": ("lib.bench.scale", "time chapter 3's pipeline from ml-latest-small's size to MovieLens-32M's"),
    "bench-distributed": ("lib.bench.distributed", "1 and 2 processes (torch.distributed): finetuning steps and "
                          "the sharded movie objective; bytes all-reduced; a projection to 8 and 64 (appendix B)"),
}
