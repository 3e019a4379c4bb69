"""mtl-harness: multi-task learning sweeps against matched single-task baselines."""
