"""rockdet: find and measure rocks in planetary terrain-camera images."""

__version__ = "0.1.0"
