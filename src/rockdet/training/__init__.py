"""Training: the typed config, the Lightning task and run, pseudo-labels."""
