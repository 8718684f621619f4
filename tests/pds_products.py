"""Small PDS3 and PDS4 image products the tests write: labels built from the structures of real
MSL labels (../shared/data/planetary-labels), with the camera models' values copied from them
(NASA mission data, public domain), pixels made by the test."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

#: MSL left Navcam, sol 609 (NLB_451557756RASLF0311330NCAM00353M1): CAHV in ROVER_NAV_FRAME, 1024x1024.
NAVCAM_CAHV = [(0.809503, 0.324769, -1.8358), (0.558137, -0.23828, 0.794788),
               (764.598, 1011.53, 403.962), (-613.528, 259.841, 1150.39)]
NAVCAM_SIDE = 1024
NAVCAM_ROVER_POSE = {"offset": (-85.4875, -59.027, 1.74495), "quaternion": (0.883773, 0.0252917, 0.0771217, -0.460822)}
#: MSL left front Hazcam thumbnail, sol 1263: CAHVORE type 3, linearity 0.37, 64x64.
HAZCAM_CAHVORE = [(1.03304, -0.17145, -0.707908), (0.706662, 0.00032, 0.707551), (21.9636, 28.3687, 21.6746),
                  (2.37507, 0.231257, 42.5149), (0.704793, -0.000541, 0.709413), (8.0e-06, -0.013391, -0.007308),
                  (0.001868, 0.001572, 0.001665), 3, 0.37]


def navcam_for(side: int) -> list:
    """The Navcam model for an image of ``side`` pixels (H and V scale with the pixels)."""
    scale = side / NAVCAM_SIDE
    c, a, h, v = NAVCAM_CAHV
    return [c, a, tuple(scale * x for x in h), tuple(scale * x for x in v)]


def _vector(values) -> str:
    return "(" + ",".join(f"{float(x):.9g}" for x in values) + ")"


def camera_group(kind: str, components: list, frame: str = "ROVER_NAV_FRAME") -> str:
    lines = ["GROUP = GEOMETRIC_CAMERA_MODEL", f"  MODEL_TYPE = {kind}"]
    for number, component in enumerate(components, start=1):
        value = _vector(component) if isinstance(component, (tuple, list)) else f"{float(component)}"
        lines.append(f"  MODEL_COMPONENT_{number} = {value}")
    lines += [f'  REFERENCE_COORD_SYSTEM_NAME = "{frame}"', "END_GROUP = GEOMETRIC_CAMERA_MODEL"]
    return "\n".join(lines)


def rover_group(offset, quaternion, frame: str = "ROVER_NAV_FRAME") -> str:
    return "\n".join(["GROUP = ROVER_COORDINATE_SYSTEM", f'  COORDINATE_SYSTEM_NAME = "{frame}"',
                      f"  ORIGIN_OFFSET_VECTOR = {_vector(offset)}",
                      f"  ORIGIN_ROTATION_QUATERNION = {_vector(quaternion)}",
                      '  REFERENCE_COORD_SYSTEM_NAME = "SITE_FRAME"', "END_GROUP = ROVER_COORDINATE_SYSTEM"])


def write_pds3(path: Path, values: np.ndarray, groups: str = "", sample_type: str = "MSB_INTEGER",
               record_bytes: int = 512, pointer_shift: int = 0, keep_bytes: int | None = None,
               extra_image_keys: str = "", mask: str = "2#0000111111111111#", band_storage: str = "BAND_SEQUENTIAL",
               edits: dict[str, str] | None = None, pointer: str | None = None) -> Path:
    """An attached-label PDS3 product of 16-bit samples ([H, W] or band-sequential [B, H, W]),
    stored as ``band_storage`` says. ``edits`` replace label lines by their key (``{"LINES": '"abc"'}``);
    ``pointer`` replaces the ^IMAGE value."""
    bands, height, width = (1, *values.shape) if values.ndim == 2 else values.shape
    signed = "UNSIGNED" not in sample_type and mask == "2#1111111111111111#"
    dtype = (">" if sample_type.startswith("MSB") else "<") + ("i2" if signed else "u2")
    stored = values if values.ndim == 2 else {
        "BAND_SEQUENTIAL": values, "LINE_INTERLEAVED": np.moveaxis(values, 0, 1),
        "SAMPLE_INTERLEAVED": np.moveaxis(values, 0, 2)}[band_storage]
    data = np.ascontiguousarray(stored.astype(dtype)).tobytes()

    def label(label_records: int) -> str:  # PDS3 labels end their lines with CR LF
        lines = [
            "PDS_VERSION_ID = PDS3", "RECORD_TYPE = FIXED_LENGTH", f"RECORD_BYTES = {record_bytes}",
            f"FILE_RECORDS = {label_records + math.ceil(len(data) / record_bytes)}",
            f"LABEL_RECORDS = {label_records}", f"^IMAGE = {pointer or label_records + 1 + pointer_shift}",
            'INSTRUMENT_ID = "NAV_LEFT_B"', groups,
            "OBJECT = IMAGE", "  INTERCHANGE_FORMAT = BINARY", f"  LINES = {height}", f"  LINE_SAMPLES = {width}",
            f"  SAMPLE_TYPE = {sample_type}", "  SAMPLE_BITS = 16", f"  BANDS = {bands}",
            f"  BAND_STORAGE_TYPE = {band_storage}", "  INVALID_CONSTANT = 0.0", "  MISSING_CONSTANT = 0.0",
            f"  SAMPLE_BIT_MASK = {mask}", extra_image_keys, "END_OBJECT = IMAGE", "END", ""]
        for key, value in (edits or {}).items():
            lines = [f"  {key} = {value}" if line.strip().split(" = ")[0] == key else line for line in lines]
        return "\r\n".join(lines).replace("\n", "\r\n").replace("\r\r", "\r")

    records = 1
    while len(label(records).encode()) > records * record_bytes:
        records += 1
    content = label(records).encode().ljust(records * record_bytes, b" ") + data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content[:keep_bytes] if keep_bytes is not None else content)
    return path


def write_detached_label(data_file: Path, label_path: Path, groups: str = "", shape: tuple[int, int] = (48, 64),
                         pointer: str | None = None) -> Path:
    """A detached PDS3 label (as MSL PDS-archive folders have) for the 16-bit image of a product
    ``write_pds3`` made, pointing into it past its attached label."""
    head = data_file.read_bytes()[:4096].decode("latin-1")
    records = int(head.split("LABEL_RECORDS = ")[1].split()[0])
    pointer = pointer or '("{}", {})'.format(data_file.name, records + 1)
    label_path.write_text("\r\n".join([
        "PDS_VERSION_ID = PDS3", "RECORD_TYPE = FIXED_LENGTH", "RECORD_BYTES = 512",
        f"^IMAGE = {pointer}", 'INSTRUMENT_HOST_ID = "MSL"', groups,
        "OBJECT = IMAGE", f"  LINES = {shape[0]}", f"  LINE_SAMPLES = {shape[1]}", "  SAMPLE_TYPE = MSB_INTEGER",
        "  SAMPLE_BITS = 16", "  BANDS = 1", "  BAND_STORAGE_TYPE = BAND_SEQUENTIAL", "  MISSING_CONSTANT = 0.0",
        "END_OBJECT = IMAGE", "END", ""]))
    return label_path


def cahv_xml(components: list, frame: str = "ROVER_NAV_FRAME") -> str:
    c, a, h, v = components
    def vector(name, values, axis):
        return (f"<geom:{name}>" + "".join(f"<geom:{k}_{axis}>{x}</geom:{k}_{axis}>" for k, x in zip("xyz", values))
                + f"</geom:{name}>")
    return ("<geom:Geometry><geom:Camera_Model_Parameters><geom:model_type>CAHV</geom:model_type><geom:CAHV_Model>"
            + vector("Vector_Center", c, "position") + vector("Vector_Axis", a, "unit")
            + vector("Vector_Horizontal", h, "pixel") + vector("Vector_Vertical", v, "pixel")
            + "</geom:CAHV_Model><geom:Coordinate_Space_Reference><geom:Coordinate_Space_Indexed>"
            + f"<geom:coordinate_space_frame_type>{frame}</geom:coordinate_space_frame_type>"
            + "</geom:Coordinate_Space_Indexed></geom:Coordinate_Space_Reference>"
            + "</geom:Camera_Model_Parameters></geom:Geometry>")


def write_pds4(label_path: Path, values: np.ndarray, geometry_xml: str = "", keep_bytes: int | None = None) -> Path:
    """A PDS4 product: big-endian 16-bit [H, W] data beside its XML label."""
    height, width = values.shape
    data_path = label_path.with_suffix(".IMG")
    data = np.ascontiguousarray(values.astype(">u2")).tobytes()
    label_path.parent.mkdir(parents=True, exist_ok=True)
    data_path.write_bytes(data[:keep_bytes] if keep_bytes is not None else data)
    label_path.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<Product_Observational xmlns="http://pds.nasa.gov/pds4/pds/v1" xmlns:geom="http://pds.nasa.gov/pds4/geom/v1">
  <Identification_Area>
    <logical_identifier>urn:nasa:pds:rockdet:test:{label_path.stem.lower()}</logical_identifier>
    <version_id>1.0</version_id><title>rockdet test product</title>
    <information_model_version>1.15.0.0</information_model_version>
    <product_class>Product_Observational</product_class>
  </Identification_Area>
  <Observation_Area><Discipline_Area>{geometry_xml}</Discipline_Area></Observation_Area>
  <File_Area_Observational>
    <File><file_name>{data_path.name}</file_name></File>
    <Array_2D_Image>
      <local_identifier>image</local_identifier>
      <offset unit="byte">0</offset>
      <axes>2</axes>
      <axis_index_order>Last Index Fastest</axis_index_order>
      <Element_Array><data_type>UnsignedMSB2</data_type></Element_Array>
      <Axis_Array><axis_name>Line</axis_name><elements>{height}</elements><sequence_number>1</sequence_number></Axis_Array>
      <Axis_Array><axis_name>Sample</axis_name><elements>{width}</elements><sequence_number>2</sequence_number></Axis_Array>
      <Special_Constants><missing_constant>0</missing_constant></Special_Constants>
    </Array_2D_Image>
  </File_Area_Observational>
</Product_Observational>
""")
    return label_path


def terrain_values(width: int, height: int, rocks: list[tuple[int, int, int, int]], background: int = 3000,
                   rock: int = 300, texture: int = 600) -> np.ndarray:
    """12-bit values: a bright ground with dark rectangular rocks (x0, y0, x1, y1).

    Rocks are textured (every other pixel ``texture`` brighter): stretched to 8 bit they are
    dark grey rather than featureless black, as real rocks are."""
    values = np.full((height, width), background, dtype=np.uint16)
    checker = (np.add.outer(np.arange(height), np.arange(width)) % 2).astype(np.uint16)
    for x0, y0, x1, y1 in rocks:
        values[y0:y1, x0:x1] = rock + texture * checker[y0:y1, x0:x1]
    return values
