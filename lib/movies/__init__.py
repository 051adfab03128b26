"""MovieLens movie embeddings (chapter 3): likes and co-occurrence, the objective and its
floor, optimiser runs, recommendation and evaluation. Uses ``lib.core`` only."""

# ``python -m lib`` commands: name -> (module with add_arguments/run, help).
COMMANDS = {
    "movies": ("lib.movies.pipeline", "learn movie embeddings, compare optimisers, write results (chapter 3)"),
    "movies-hessian": ("lib.movies.curvature", "Hessian eigenvalues at the floor, the learning-rate limits they "
                       "predict, and a sweep that tests them (chapter 3)"),
    "movies-decay": ("lib.movies.schedule", "Adam and RMSprop with a cosine-decayed learning rate (chapter 3)"),
    "movies-starts": ("lib.movies.starts", "the main optimisers from other random starts: do the top-10 lists "
                      "change? (chapter 3)"),
    "movie-baselines": ("lib.movies.baseline_run",
                        "hit-rate@10 of EASE, ALS and item-item cosine beside chapter 3's embeddings"),
    "recommend": ("lib.movies.recommend", "print the top-k movies similar to a title from the frozen embeddings"),
}
