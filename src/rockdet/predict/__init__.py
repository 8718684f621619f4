"""From pixels to rocks: settings, tiling, the detector's runtimes, catalog rules, and batch runs."""
