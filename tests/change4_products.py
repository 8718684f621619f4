"""Chang'e 4 camera products the tests write, their labels following the real GRAS PDS4 labels.

The structure is that of the real GRAS label in ../shared/data/planetary-labels (the LPR 2B
radar label: namespaces, tab indentation, "None" for empty values, Mission_Area) and of the
122 real TCAM labels as pds4_tools prints them (siyu6974/ChangE_4_data_playground,
experiment.ipynb): the File's local_identifier is "None", the image array has no
local_identifier (pds4_tools and pdr name it ARRAY_0), ``Last Index Fastest``, axes Line,
Sample[, Band]. TCAM level 2C: Line x Sample x Band, 8-bit (band last); PCAM level 2B: raw RGGB
Bayer mosaic, 16-bit LSB; LCAM: 8-bit grey. Pixels are made by the tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA_TYPES = {"UnsignedByte": "u1", "UnsignedLSB2": "<u2", "UnsignedMSB2": ">u2", "SignedLSB2": "<i2"}
HOSTS = {"TCAM": ("CE4La", "Terrain Camera"), "LCAM": ("CE4La", "Landing Camera"),
         "PCAM": ("CE4Ro", "Panoramic Camera")}


def gras_label(data_name: str, shape: tuple[int, ...], axes: tuple[str, ...], data_type: str, instrument: str,
               level: str, file_size: int) -> str:
    host, instrument_name = HOSTS[instrument]
    array = "Array_3D_Image" if len(shape) == 3 else "Array_2D_Image"
    axis_xml = "".join(
        f"\n\t\t\t<Axis_Array>\n\t\t\t\t<axis_name>{name}</axis_name>\n\t\t\t\t<elements>{elements}</elements>"
        f"\n\t\t\t\t<sequence_number>{number}</sequence_number>\n\t\t\t</Axis_Array>"
        for number, (name, elements) in enumerate(zip(axes, shape), start=1))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Product_Observational xmlns="http://pds.nasa.gov/pds4/pds/v1" xmlns:pds="http://pds.nasa.gov/pds4/pds/v1" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://pds.nasa.gov/pds4/pds/v1 \
https://starbase.jpl.nasa.gov/pds4/1500/dph_example_products/xml_schema/PDS4_PDS_1500.xsd">
\t<Identification_Area>
\t\t<logical_identifier>{data_name}</logical_identifier>
\t\t<version_id>1.0</version_id>
\t\t<title>Chang'E 4(CE-4) mission</title>
\t\t<information_model_version>1.5.0.0</information_model_version>
\t\t<product_class>Product_Observational</product_class>
\t\t<Modification_History>
\t\t\t<Modification_Detail>
\t\t\t\t<modification_date>2019-01-03</modification_date>
\t\t\t\t<version_id>1.0</version_id>
\t\t\t\t<description>None</description>
\t\t\t</Modification_Detail>
\t\t</Modification_History>
\t</Identification_Area>
\t<Reference_List>None</Reference_List>
\t<Observation_Area>
\t\t<Time_Coordinates>
\t\t\t<start_date_time>2019-01-11T19:57:09.000Z</start_date_time>
\t\t\t<stop_date_time>2019-01-11T19:57:09.000Z</stop_date_time>
\t\t</Time_Coordinates>
\t\t<Primary_Result_Summary>
\t\t\t<purpose>Science</purpose>
\t\t\t<processing_level>Calibrated</processing_level>
\t\t</Primary_Result_Summary>
\t\t<Investigation_Area>
\t\t\t<name>CE4</name>
\t\t\t<type>Mission</type>
\t\t</Investigation_Area>
\t\t<Observing_System>
\t\t\t<name>Observing System for {host}</name>
\t\t\t<Observing_System_Component>
\t\t\t\t<name>{host}</name>
\t\t\t\t<type>Spacecraft</type>
\t\t\t</Observing_System_Component>
\t\t</Observing_System>
\t\t<Target_Identification>
\t\t\t<name>Lunar</name>
\t\t\t<type>Satellite</type>
\t\t</Target_Identification>
\t\t<Mission_Area>
\t\t\t<product_id>{data_name}</product_id>
\t\t\t<product_version>A</product_version>
\t\t\t<product_level>{level}</product_level>
\t\t\t<instrument_name>{instrument_name}</instrument_name>
\t\t\t<instrument_id>{instrument}</instrument_id>
\t\t\t<sequence_id>0009</sequence_id>
\t\t</Mission_Area>
\t</Observation_Area>
\t<File_Area_Observational>
\t\t<File>
\t\t\t<file_name>{data_name}</file_name>
\t\t\t<local_identifier>None</local_identifier>
\t\t\t<creation_date_time>2019-01-12T07:53:00.000Z</creation_date_time>
\t\t\t<file_size unit="byte">{file_size}</file_size>
\t\t</File>
\t\t<{array}>
\t\t\t<offset unit="byte">0</offset>
\t\t\t<axes>{len(shape)}</axes>
\t\t\t<axis_index_order>Last Index Fastest</axis_index_order>
\t\t\t<Element_Array>
\t\t\t\t<data_type>{data_type}</data_type>
\t\t\t</Element_Array>{axis_xml}
\t\t</{array}>
\t</File_Area_Observational>
</Product_Observational>
"""


def write_change4(folder: Path, data_name: str, stored: np.ndarray, axes: tuple[str, ...], data_type: str,
                  instrument: str, edits: dict[str, str] | None = None,
                  label_shape: tuple[int, ...] | None = None) -> Path:
    """Data file ``data_name`` (stored in ``axes`` order, last index fastest) and its label
    (``.2CL`` beside ``.2C``); ``edits`` replace text in the label, ``label_shape`` the axes'
    elements (default: the stored shape). Returns the data file."""
    folder.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(stored.astype(DATA_TYPES[data_type])).tobytes()
    data_path = folder / data_name
    data_path.write_bytes(data)
    level = data_name.rsplit(".", 1)[1]
    text = gras_label(data_name, label_shape or stored.shape, axes, data_type, instrument, level, len(data))
    for old, new in (edits or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    (folder / f"{data_name}L").write_text(text)
    return data_path


def tcam_name(number: int = 143) -> str:
    return f"CE4_GRAS_TCAM-I-{number:03d}_SCI_N_20190111195709_20190111195709_0009_A.2C"


def pcam_name(number: int = 51) -> str:
    return f"CE4_GRAS_PCAML-C-{number:03d}_SCI_N_20230615051107_20230615051107_0296_B.2B"


def lcam_name(number: int = 0) -> str:
    return f"CE4_GRAS_LCAM-1-{number:04d}_SCI_N_20190103022009_20190103022009_0001_A.2B"


def rggb_mosaic(height: int, width: int, red: int, green: int, blue: int) -> np.ndarray:
    """A raw RGGB Bayer frame of a uniform colour."""
    mosaic = np.empty((height, width), dtype=np.uint16)
    mosaic[0::2, 0::2], mosaic[0::2, 1::2], mosaic[1::2, 0::2], mosaic[1::2, 1::2] = red, green, green, blue
    return mosaic
