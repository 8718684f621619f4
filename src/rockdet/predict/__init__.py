"""From pixels to rocks: one settings object, tiling, the detector's runtimes, the catalog rules, the
Predictor (the Python API) and batch runs."""
