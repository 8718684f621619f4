"""Pixels and files in and out: images of every format, planetary archive products, predict's inputs, output checks."""
