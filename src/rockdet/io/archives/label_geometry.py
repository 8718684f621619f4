"""An image's own camera model, rover pose and ground, read from its PDS3 or PDS4 label.

PDS3 (MER, MSL): the camera model group (``GEOMETRIC_CAMERA_MODEL[_PARMS]``: MODEL_TYPE,
MODEL_COMPONENT_1..9, REFERENCE_COORD_SYSTEM_NAME) and the frame groups
(``ROVER_COORDINATE_SYSTEM``, ``..._COORDINATE_SYSTEM_PARMS``, ``..._COORD_SYSTEM_PARMS``:
offset and quaternion of a frame in SITE_FRAME); see pds3_groups. PDS4 (Mars 2020):
``geom:Camera_Model_Parameters`` with ``geom:CAHV_Model`` / ``CAHVOR_Model`` / ``CAHVORE_Model``,
its frame in ``geom:coordinate_space_frame_type``, and the frames'
``geom:Coordinate_Space_Definition`` (offset and quaternion in SITE_FRAME).

Models and poses are checked for sense before use (camera_models.check_model, quaternions that
normalise): a model that fails is a CameraModelError (the image is unsized, with the reason); a
pose that fails only costs the site coordinates, with a note. What is read is a
geometry.frames.LabelGeometry; the ground of each frame, and its source, is in
geometry.rover_ground.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from typing import Mapping

import numpy as np

from rockdet.geometry.camera_models import CahvoreModel, check_model
from rockdet.geometry.frames import CameraModelError, LabelGeometry, PoseError, pose_matrix
from rockdet.geometry.rover_ground import Z_DOWN, ground_plane, mission_of
from rockdet.io.archives import pds3_groups as groups

MODEL_TYPES = ("CAHV", "CAHVOR", "CAHVORE")


def build_model(kind, components: list) -> CahvoreModel:
    """A model from its type name and components in label order (C, A, H, V, O, R, E, type, L),
    checked for sense (camera_models.check_model)."""
    kind = groups.text(kind).upper()
    if kind not in MODEL_TYPES:
        raise CameraModelError(f"unknown camera model type '{kind}' (rockdet reads {', '.join(MODEL_TYPES)})")
    needed = {"CAHV": 4, "CAHVOR": 6, "CAHVORE": 8}[kind]
    present = [c for c in components[:needed] if c is not None]
    if len(present) < needed:
        raise CameraModelError(f"{kind} camera model needs {needed} components, the label gives {len(present)}")
    try:
        if kind == "CAHV":
            model = CahvoreModel.cahv(*components[:4])
        elif kind == "CAHVOR":
            model = CahvoreModel.cahvor(*components[:6])
        else:
            linearity = components[8] if len(components) > 8 else None
            model_type = float(components[7])
            if not math.isfinite(model_type) or model_type != int(model_type):
                raise ValueError(f"CAHVORE model type {components[7]!r} is not 1, 2 or 3")
            model = CahvoreModel.cahvore(*components[:7], int(model_type),
                                         None if linearity is None else float(linearity))
        check_model(model)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CameraModelError(f"{kind} camera model: {exc}") from None
    return model


def geometry_from_pds3(label: Mapping, source: str = "label") -> LabelGeometry | None:
    """The label's model, pose and ground; None when it has no camera model group."""
    found = groups.camera_model_group(label)
    if found is None:
        return None
    name, group = found
    model = build_model(group.get("MODEL_TYPE", "missing"), [group.get(f"MODEL_COMPONENT_{i}") for i in range(1, 10)])
    frame = groups.text(group.get("REFERENCE_COORD_SYSTEM_NAME"))
    if not frame:
        raise CameraModelError(f"{name} names no REFERENCE_COORD_SYSTEM_NAME: the model's frame is unknown")
    notes: list[str] = []
    rotation = offset = None
    if frame == "SITE_FRAME":
        rotation, offset = np.eye(3), np.zeros(3)
    elif (pose := groups.pose_of(label, frame)) is not None:
        rotation, offset = _pds3_pose(pose, group, notes)
    rover, rover_frame = (None, None), None
    if (found_rover := groups.rover_pose(label)) is not None:
        rover_frame = groups.text(found_rover[1].get("COORDINATE_SYSTEM_NAME"))
        rover = (rotation, offset) if rover_frame == frame else _pds3_pose(found_rover, None, [])
    ground = ground_plane(mission_of(groups.mission_text(label)), frame, rover_frame, *rover, rotation)
    return LabelGeometry(model, frame, Z_DOWN.copy(), rotation, offset, ground, source, tuple(notes))


def _pds3_pose(pose: tuple[str, Mapping], model_group: Mapping | None, notes: list[str]):
    name, group = pose
    model_index = None if model_group is None else model_group.get("REFERENCE_COORD_SYSTEM_INDEX")
    pose_index = group.get("COORDINATE_SYSTEM_INDEX")
    if model_index is not None and pose_index is not None and _index(model_index) != _index(pose_index):
        notes.append(f"no site coordinates: {name} is for frame index {_index(pose_index)}, the camera model "
                     f"for {_index(model_index)}")
        return None, None
    try:
        return pose_matrix(group.get("ORIGIN_OFFSET_VECTOR"), group.get("ORIGIN_ROTATION_QUATERNION"), name)
    except PoseError as exc:
        notes.append(f"no site coordinates: {exc}")
        return None, None


def _index(value) -> tuple:
    values = value if isinstance(value, (list, tuple)) else [value]
    return tuple(groups.text(v) for v in values)


def geometry_from_pds4(xml_text: str, source: str = "label") -> LabelGeometry | None:
    """The model, pose and ground of a PDS4 label (geom discipline); None without a camera model."""
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
    model = build_model(kind, vectors + [_text(model_element, "cahvore_model_type"),
                                         _text(model_element, "cahvore_model_parameter")])
    frame = (_text(parameters, "coordinate_space_frame_type") or "").strip()
    notes: list[str] = []
    poses = _pds4_poses(root, notes)
    rotation, offset = (np.eye(3), np.zeros(3)) if frame == "SITE_FRAME" else poses.get(frame, (None, None))
    mission = mission_of(" ".join(e.text or "" for e in root.iter() if _local(e.tag) == "name")) or "M2020"
    rover = poses.get("ROVER_NAV_FRAME", (None, None))
    ground = ground_plane(mission, frame, "ROVER_NAV_FRAME" if rover[0] is not None else None, *rover, rotation)
    return LabelGeometry(model, frame, Z_DOWN.copy(), rotation, offset, ground, source, tuple(notes))


def _pds4_poses(root, notes: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """frame → (rotation, offset) in SITE_FRAME, from every geom:Coordinate_Space_Definition."""
    poses = {}
    for definition in _find_all(root, "Coordinate_Space_Definition"):
        present, reference = _find(definition, "Coordinate_Space_Present"), _find(definition, "Coordinate_Space_Reference")
        frame = (_text(present, "coordinate_space_frame_type") or "").strip() if present is not None else ""
        target = " ".join((e.text or "") for e in (reference.iter() if reference is not None else []))
        if not frame or frame == "SITE_FRAME" or frame in poses or "SITE_FRAME" not in target:
            continue
        quaternion = _find(definition, "Quaternion_Plus_Direction")
        try:
            values = None if quaternion is None else [_text(quaternion, n) for n in ("qcos", "qsin1", "qsin2", "qsin3")]
            offset = _vector(definition, "Vector_Origin_Offset")
            poses[frame] = pose_matrix(offset, values, f"geom:Coordinate_Space_Definition of {frame}")
        except (PoseError, CameraModelError) as exc:
            notes.append(f"no site coordinates: {exc}")
    return poses


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
