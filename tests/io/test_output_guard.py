"""output_guard: outputs are never an input, a folder, or under a file, and are proven writable."""

import pytest

from rockdet.io.output_guard import (
    OutputError,
    check_output_file,
    check_output_files_in,
    check_output_folder,
    refuse_inputs_as_outputs,
)


def test_an_output_that_resolves_to_an_input_is_refused(tmp_path):
    (tmp_path / "in.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "in.json")
    for output in (tmp_path / "in.json", tmp_path / "link.json", tmp_path / "sub" / ".." / "in.json"):
        with pytest.raises(OutputError, match="is the input"):
            refuse_inputs_as_outputs([output], [tmp_path / "in.json", None])
    refuse_inputs_as_outputs([tmp_path / "out.json"], [tmp_path / "in.json"])


def test_files_and_folders_that_cannot_be_outputs(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path / "folder")
    with pytest.raises(OutputError, match="is a file, so nothing can be written under it"):
        check_output_file(tmp_path / "file" / "deeper" / "m.onnx")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(OutputError, match="is not a regular file"):
        check_output_files_in(tmp_path, ["folder"], "--out")
    assert check_output_file(tmp_path / "new" / "m.onnx") == tmp_path / "new" / "m.onnx"
    assert check_output_folder(tmp_path / "new" / "out") == tmp_path / "new" / "out"
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
