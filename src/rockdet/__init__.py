"""rockdet: find and measure rocks in planetary terrain-camera images.

    from rockdet import Predictor
    catalog = Predictor.load("model.pt")("frame.png")
"""

__version__ = "0.2.0"

#: What ``from rockdet import ...`` offers, loaded on first use (importing rockdet stays cheap).
_API = {"Predictor": "rockdet.predict.predictor", "PredictSettings": "rockdet.predict.settings",
        "Catalog": "rockdet.catalog.catalog", "Rock": "rockdet.catalog.rock", "ModelInfo": "rockdet.models.info"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'rockdet' has no attribute {name!r}")
