"""The geometry groups of PDS3 labels, under every spelling the archives use.

Camera models: ``GEOMETRIC_CAMERA_MODEL`` (MER and MSL attached labels, PDS3 data dictionary)
and ``GEOMETRIC_CAMERA_MODEL_PARMS`` (MSL PDS-archive detached labels, Mastcam RDRs). Frames:
``<NAME>_COORDINATE_SYSTEM`` (MER/MSL attached labels: ROVER_, SITE_, LOCAL_LEVEL_, RSM_, PMA_,
IDD_, ARM_ ...), ``<NAME>_COORDINATE_SYSTEM_PARMS`` (Mastcam) and ``<NAME>_COORD_SYSTEM_PARMS``
(MSL archive detached labels), each with COORDINATE_SYSTEM_NAME, ORIGIN_OFFSET_VECTOR,
ORIGIN_ROTATION_QUATERNION and REFERENCE_COORD_SYSTEM_NAME. Group names may carry a mission
namespace (``MSL:...``); values may be quoted.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

CAMERA_MODEL_GROUP = re.compile(r"^(?:\w+:)?GEOMETRIC_CAMERA_MODEL(?:_PARMS|_PARAMETERS)?$")
FRAME_GROUP = re.compile(r"^(?:\w+:)?(?P<kind>[A-Z0-9_]+?)_COORD(?:INATE)?_SYSTEM(?:_PARMS|_PARAMETERS)?$")
#: Keys naming a product's mission and host, for the frames whose ground the mission defines.
MISSION_KEYS = ("INSTRUMENT_HOST_ID", "INSTRUMENT_HOST_NAME", "MISSION_NAME", "SPACECRAFT_NAME", "SPACECRAFT_ID")


def text(value: Any) -> str:
    """A label value as plain text: quotes stripped."""
    return "" if value is None else str(value).strip().strip('"').strip("'").strip()


def groups(label: Mapping) -> Iterator[tuple[str, Mapping]]:
    """(name, group) for every group or object of the label, one level of nesting included."""
    for key, value in _items(label):
        if isinstance(value, Mapping) or hasattr(value, "items"):
            yield str(key), value
            for inner_key, inner in _items(value):
                if isinstance(inner, Mapping) or hasattr(inner, "items"):
                    yield str(inner_key), inner


def camera_model_group(label: Mapping) -> tuple[str, Mapping] | None:
    return next(((name, group) for name, group in groups(label) if CAMERA_MODEL_GROUP.match(name)), None)


def frame_groups(label: Mapping) -> list[tuple[str, Mapping]]:
    """Every coordinate-system group: (group name, group)."""
    return [(name, group) for name, group in groups(label) if FRAME_GROUP.match(name)
            and "COORDINATE_SYSTEM_NAME" in group]


def pose_of(label: Mapping, frame: str) -> tuple[str, Mapping] | None:
    """The group placing ``frame`` in SITE_FRAME, if the label has one."""
    for name, group in frame_groups(label):
        if text(group.get("COORDINATE_SYSTEM_NAME")) == frame and \
                "SITE" in text(group.get("REFERENCE_COORD_SYSTEM_NAME")):
            return name, group
    return None


def rover_pose(label: Mapping) -> tuple[str, Mapping] | None:
    """The rover frame's group (ROVER_...): the rover's pose in SITE_FRAME."""
    for name, group in frame_groups(label):
        kind = FRAME_GROUP.match(name).group("kind")
        if kind == "ROVER" and "SITE" in text(group.get("REFERENCE_COORD_SYSTEM_NAME")):
            return name, group
    return None


def mission_text(label: Mapping) -> str:
    return " ".join(text(label.get(key)) for key in MISSION_KEYS)


def _items(mapping) -> list[tuple[Any, Any]]:
    try:
        return list(mapping.items())
    except Exception:  # pdr's metadata and pvl's modules both offer items(); anything else is no group
        return []
