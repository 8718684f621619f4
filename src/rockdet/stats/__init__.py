"""Statistics of rock populations: size-frequency distributions and their fits."""
