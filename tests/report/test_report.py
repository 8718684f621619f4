"""report.html: every link and image it names exists, its size does not grow with the batch, and
`rockdet report` rebuilds it from the catalogs."""

import json
from html.parser import HTMLParser

from oracle import draw_rocks, save

from rockdet.cli.main import main


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value and not value.startswith(("#", "javascript:")):
                self.targets.append(value)


def predict_batch(tmp_path, oracle, count):
    inputs = tmp_path / f"in{count}"
    for i in range(count):
        save(draw_rocks(64, 48, [(5, 5, 15, 15), (30, 20, 30 + i % 7 + 5, 35)]), inputs / f"sol{i % 2}" / f"{i:03d}.png")
    (inputs / "broken.png").write_bytes(b"not an image")
    out = tmp_path / f"out{count}"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(inputs), "--overlay"]) == 0
    return out


def test_every_link_and_image_of_the_report_exists(tmp_path, oracle, capsys):
    out = predict_batch(tmp_path, oracle, 5)
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    parser = Links()
    parser.feed(page)
    assert {"report_images.js", "report_sizes.svg", "rocks.csv", "summary.json"} <= set(parser.targets)
    assert all((out / target).is_file() for target in parser.targets), parser.targets
    assert "broken.png" in page and "http://" not in page and "https://" not in page  # no network
    data = (out / "report_images.js").read_text()
    rows = json.loads(data[data.index("=") + 1:].strip().rstrip(";"))
    assert sorted(r["image"] for r in rows) == sorted(f"sol{i % 2}/{i:03d}.png" for i in range(5))
    for row in rows:
        assert row["rocks"] == 2 and row["largest_px"] >= row["median_px"] > 0 and row["median_m"] is None
        for key in ("thumbnail", "overlay", "catalog"):
            assert (out / row[key]).is_file()


def test_the_page_does_not_grow_with_the_batch_and_rebuilds_from_the_catalogs(tmp_path, oracle):
    small, large = predict_batch(tmp_path, oracle, 2), predict_batch(tmp_path, oracle, 40)
    sizes = [len((folder / "report.html").read_text()) for folder in (small, large)]
    assert abs(sizes[1] - sizes[0]) < 200  # only the numbers differ; rows live in the data file
    (large / "report.html").unlink()
    assert main(["report", str(large)]) == 0
    assert (large / "report.html").is_file()
    assert main(["report", str(tmp_path)]) == 2  # not a predict output folder


def test_a_catalog_damaged_while_the_run_goes_on_is_left_out_of_the_batch_files(tmp_path, oracle, monkeypatch):
    import csv

    import rockdet.predict.batch as batch

    out = predict_batch(tmp_path, oracle, 3)
    planned = batch.plan_batch

    def plan_then_damage(*arguments, **keywords):
        plan = planned(*arguments, **keywords)  # every catalog kept: then one is damaged
        (out / "catalogs" / "sol1" / "001.png.json").write_text("{")
        return plan

    monkeypatch.setattr(batch, "plan_batch", plan_then_damage)
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(tmp_path / "in3"), "--overlay"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [entry["image"] for entry in summary["catalogs_left_out"]] == ["sol1/001.png"]
    assert "not readable JSON" in summary["catalogs_left_out"][0]["reason"]
    images = {row["image"] for row in csv.DictReader(open(out / "rocks.csv"))}
    assert images == {"sol0/000.png", "sol0/002.png"} and summary["rocks_total"] == 4
    data = (out / "report_images.js").read_text()
    rows = {row["image"]: row for row in json.loads(data[data.index("=") + 1:].strip().rstrip(";"))}
    assert "not readable JSON" in rows["sol1/001.png"]["unreadable"] and rows["sol0/000.png"]["rocks"] == 2


def test_the_size_histogram_is_an_svg_whose_bars_count_every_rock(tmp_path):
    import xml.etree.ElementTree as ElementTree

    from rockdet.report.histogram import write_size_histogram

    diameters = [3.0, 3.1, 12.0, 12.5, 13.0, 140.0, 0.4, 0.0]  # 0.0 has no size; 0.4 joins the first bin
    path = tmp_path / "sizes.svg"
    assert write_size_histogram(diameters, path)
    svg = ElementTree.parse(path).getroot()  # well-formed XML, as a browser needs it
    namespace = "{http://www.w3.org/2000/svg}"
    bars = [rect for rect in svg.iter(f"{namespace}rect") if rect.find(f"{namespace}title") is not None]
    counts = [int(bar.find(f"{namespace}title").text.split(": ")[1].split()[0]) for bar in bars]
    assert sum(counts) == 7 and len(bars) == 4
    assert any(text.text == "7 rocks" for text in svg.iter(f"{namespace}text"))
    assert not write_size_histogram([0.0], tmp_path / "none.svg") and not (tmp_path / "none.svg").exists()


def test_a_size_histogram_of_rocks_all_about_one_size_labels_its_axis(tmp_path):
    import xml.etree.ElementTree as ElementTree

    from rockdet.report.histogram import write_size_histogram

    # 3.1-3.4 px lies between the 1-2-5 ticks 2 and 5: the axis is labelled at its two ends.
    path = tmp_path / "sizes.svg"
    assert write_size_histogram([3.1, 3.2, 3.3, 3.4], path)
    labels = [float(text.text) for text in ElementTree.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text")
              if text.text and text.text.replace(".", "", 1).isdigit() and "." in text.text]
    assert len(labels) >= 2 and min(labels) <= 3.1 and max(labels) >= 3.4
