"""An image's own camera model and rover pose, read from its PDS3 or PDS4 label.

PDS3 (MER, MSL): ``GROUP = GEOMETRIC_CAMERA_MODEL`` (MODEL_TYPE, MODEL_COMPONENT_1..9,
REFERENCE_COORD_SYSTEM_NAME) and ``GROUP = ROVER_COORDINATE_SYSTEM`` (ORIGIN_OFFSET_VECTOR and
ORIGIN_ROTATION_QUATERNION of the rover frame in SITE_FRAME). PDS4 (Mars 2020):
``geom:Camera_Model_Parameters`` with ``geom:CAHV_Model`` / ``CAHVOR_Model`` / ``CAHVORE_Model``,
its frame in ``geom:coordinate_space_frame_type``, and the frame's
``geom:Coordinate_Space_Definition`` (offset and quaternion in SITE_FRAME).

The JPL rover frames (ROVER_NAV_FRAME, LOCAL_LEVEL_FRAME, SITE_FRAME) point z down; in
ROVER_NAV_FRAME and LOCAL_LEVEL_FRAME the origin lies on the ground below the rover, so the ground
is the plane z = 0 there; in other frames the user gives its height (``--ground-z``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from rockdet.camera_models import CahvoreModel

#: Frames whose origin is on the ground below the rover: the ground is z = 0 there.
GROUND_ORIGIN_FRAMES = ("ROVER_NAV_FRAME", "LOCAL_LEVEL_FRAME")
#: Every JPL rover frame points z down.
Z_DOWN = np.array([0.0, 0.0, -1.0])
MODEL_TYPES = ("CAHV", "CAHVOR", "CAHVORE")


class CameraModelError(ValueError):
    """The label has a camera model rockdet cannot use; the message says why, in one line."""


@dataclass(frozen=True)
class LabelGeometry:
    model: CahvoreModel
    #: Frame the model is given in (e.g. ROVER_NAV_FRAME).
    frame: str
    #: Unit vector pointing up (away from the ground) in ``frame``.
    up: np.ndarray
    #: frame → SITE_FRAME: p_site = rotation @ p + offset (None when the label gives no pose).
    site_rotation: np.ndarray | None = None
    site_offset: np.ndarray | None = None

    @property
    def known_ground_z(self) -> float | None:
        """Height of the ground plane (z, down) the frame itself implies, else None."""
        return 0.0 if self.frame in GROUND_ORIGIN_FRAMES else None

    def to_site(self, points: np.ndarray) -> np.ndarray | None:
        if self.site_rotation is None:
            return None
        return np.atleast_2d(points) @ self.site_rotation.T + self.site_offset

    def describe(self) -> dict[str, Any]:
        values = {"source": "label", "frame": self.frame, **self.model.describe()}
        if self.site_rotation is not None:
            values["site_frame"] = {"offset": self.site_offset.tolist(),
                                    "rotation": self.site_rotation.round(9).tolist()}
        return values


def quaternion_matrix(quaternion) -> np.ndarray:
    """Rotation matrix of a (scalar-first) quaternion, as PDS labels give them."""
    s, x, y, z = np.asarray(quaternion, float) / np.linalg.norm(quaternion)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - s * z), 2 * (x * z + s * y)],
                     [2 * (x * y + s * z), 1 - 2 * (x * x + z * z), 2 * (y * z - s * x)],
                     [2 * (x * z - s * y), 2 * (y * z + s * x), 1 - 2 * (x * x + y * y)]])


def build_model(kind: str, components: list) -> CahvoreModel:
    """A model from its type name and components in label order (C, A, H, V, O, R, E, type, L)."""
    kind = str(kind).strip().upper()
    if kind not in MODEL_TYPES:
        raise CameraModelError(f"unknown camera model type '{kind}' (rockdet reads {', '.join(MODEL_TYPES)})")
    needed = {"CAHV": 4, "CAHVOR": 6, "CAHVORE": 8}[kind]
    present = [c for c in components[:needed] if c is not None]
    if len(present) < needed:
        raise CameraModelError(f"{kind} camera model needs {needed} components, the label gives {len(present)}")
    try:
        if kind == "CAHV":
            return CahvoreModel.cahv(*components[:4])
        if kind == "CAHVOR":
            return CahvoreModel.cahvor(*components[:6])
        linearity = components[8] if len(components) > 8 else None
        return CahvoreModel.cahvore(*components[:7], int(float(components[7])),
                                    None if linearity is None else float(linearity))
    except (TypeError, ValueError) as exc:
        raise CameraModelError(f"{kind} camera model: {exc}") from None


def geometry_from_pds3(label: Mapping) -> LabelGeometry | None:
    """The label's model and pose; None when it has no GEOMETRIC_CAMERA_MODEL group."""
    group = label.get("GEOMETRIC_CAMERA_MODEL")
    if group is None:
        return None
    components = [group.get(f"MODEL_COMPONENT_{i}") for i in range(1, 10)]
    model = build_model(group.get("MODEL_TYPE", "missing"), components)
    frame = str(group.get("REFERENCE_COORD_SYSTEM_NAME", "")).strip('"')
    rotation = offset = None
    for key, value in label.items():
        if key.endswith("_COORDINATE_SYSTEM") and isinstance(value, Mapping) and \
                str(value.get("COORDINATE_SYSTEM_NAME", "")).strip('"') == frame and \
                "SITE" in str(value.get("REFERENCE_COORD_SYSTEM_NAME", "")):
            rotation = quaternion_matrix(value["ORIGIN_ROTATION_QUATERNION"])
            offset = np.asarray(value["ORIGIN_OFFSET_VECTOR"], float)
    return LabelGeometry(model, frame, Z_DOWN, rotation, offset)


def geometry_from_pds4(xml_text: str) -> LabelGeometry | None:
    """The model and pose of a PDS4 label (geom discipline); None when it has no camera model."""
    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as exc:
        raise CameraModelError(f"label is not readable XML ({exc})") from None
    parameters = _find(root, "Camera_Model_Parameters")
    if parameters is None:
        return None
    model_element = next((child for child in parameters if _local(child.tag).endswith("_Model")
                          and _local(child.tag) != "Camera_Model"), None)
    if model_element is None:
        raise CameraModelError("geom:Camera_Model_Parameters holds no CAHV, CAHVOR or CAHVORE model")
    kind = _local(model_element.tag).removesuffix("_Model").upper()
    vectors = [_vector(model_element, name) for name in
               ("Vector_Center", "Vector_Axis", "Vector_Horizontal", "Vector_Vertical", "Vector_Optical",
                "Radial_Terms", "Entrance_Terms")]
    components = vectors + [_text(model_element, "cahvore_model_type"),
                            _text(model_element, "cahvore_model_parameter")]
    model = build_model(kind, components)
    frame = (_text(parameters, "coordinate_space_frame_type") or "").strip()
    rotation = offset = None
    for definition in _find_all(root, "Coordinate_Space_Definition"):
        present = _find(definition, "Coordinate_Space_Present")
        if present is None or (_text(present, "coordinate_space_frame_type") or "").strip() != frame:
            continue
        quaternion = _find(definition, "Quaternion_Plus_Direction")
        offset_vector = _vector(definition, "Vector_Origin_Offset")
        if quaternion is not None and offset_vector is not None:
            rotation = quaternion_matrix([float(_text(quaternion, name)) for name in ("qcos", "qsin1", "qsin2", "qsin3")])
            offset = np.asarray(offset_vector)
        break
    return LabelGeometry(model, frame, Z_DOWN, rotation, offset)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(element, name: str):
    return next((e for e in element.iter() if _local(e.tag) == name), None)


def _find_all(element, name: str):
    return [e for e in element.iter() if _local(e.tag) == name]


def _text(element, name: str) -> str | None:
    found = _find(element, name)
    return None if found is None or found.text is None else found.text.strip()


def _vector(element, name: str) -> list[float] | None:
    found = next((e for e in element if _local(e.tag) == name), None)
    if found is None:
        return None
    values = [child.text for child in found if child.text and child.text.strip()]
    try:
        return [float(v) for v in values[:3]]
    except ValueError:
        raise CameraModelError(f"geom:{name} holds non-numbers {values}") from None
