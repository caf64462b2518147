"""How the pipeline is run: the build cache, worker processes, the output folder, fault points."""
