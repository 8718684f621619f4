"""Camera geometry: analytic ranges and sizes, horizon and behind-camera cases, nadir, errors."""

import math

import numpy as np
import pytest
from conftest import CONFIGS

from rockdet.catalog.rock import Rock
from rockdet.errors import ConfigError
from rockdet.geometry.cameras import Camera, CameraConfig, load_camera
from rockdet.geometry.sizing import size_rocks


def camera(**values) -> Camera:
    base = dict(image_width=1000, image_height=800, hfov_deg=60.0, height_m=1.5, pitch_deg=30.0)
    return Camera(CameraConfig(**{**base, **values}))


def rock_at(cam: Camera, ground_x: float, ground_y: float, diameter: float) -> Rock:
    """The box a rock of ``diameter`` standing at (x, y) on the ground images to (its base line)."""
    ends = np.array([[ground_x - diameter / 2, ground_y, 0.0], [ground_x + diameter / 2, ground_y, 0.0],
                     [ground_x, ground_y, diameter * 0.6]])
    pixels, _ = cam.ground_to_pixels(ends)
    return Rock(1, 0.9, pixels[0, 0], pixels[2, 1], pixels[1, 0], pixels[0, 1])


def test_principal_point_lands_at_height_over_tan_pitch():
    cam = camera(pitch_deg=25.0, height_m=2.0)
    x, y, _, hit = cam.pixels_to_ground(np.array([cam.cx]), np.array([cam.cy]))
    assert hit[0] and x[0] == pytest.approx(0, abs=1e-9)
    assert y[0] == pytest.approx(2.0 / math.tan(math.radians(25.0)))


@pytest.mark.parametrize("pitch, roll, k1", [(30.0, 0.0, 0.0), (15.0, 5.0, 0.0), (40.0, -3.0, -0.08)])
@pytest.mark.parametrize("ground, diameter", [((0.0, 4.0), 0.3), ((-1.2, 7.5), 0.5), ((0.8, 2.5), 0.1)])
def test_rock_of_known_size_at_known_range(pitch, roll, k1, ground, diameter):
    cam = camera(pitch_deg=pitch, roll_deg=roll, k1=k1)
    rock = rock_at(cam, *ground, diameter)
    (rock,) = size_rocks(cam, [rock])
    assert rock.size_flag == "ok"
    assert rock.range_m == pytest.approx(math.hypot(*ground), rel=0.02)
    assert (rock.ground_x_m, rock.ground_y_m) == (pytest.approx(ground[0], abs=0.03), pytest.approx(ground[1], rel=0.02))
    tolerance = 0.02 if roll == 0 else 0.06  # a rolled camera sees the base line at a slant
    assert rock.diameter_m == pytest.approx(diameter, rel=tolerance)
    assert rock.height_m == pytest.approx(0.6 * diameter, rel=0.1)


def test_pixels_round_trip_through_the_ground_with_distortion():
    cam = camera(k1=-0.1, k2=0.02, roll_deg=4.0)
    points = np.array([[0.5, 3.0, 0.0], [-2.0, 10.0, 0.0], [1.0, 1.5, 0.0]])
    pixels, in_front = cam.ground_to_pixels(points)
    assert in_front.all()
    x, y, _, hits = cam.pixels_to_ground(pixels[:, 0], pixels[:, 1])
    assert hits.all()
    np.testing.assert_allclose(np.stack([x, y], 1), points[:, :2], atol=1e-6)


def test_horizon_range_limits_and_behind_camera_are_flagged_not_crashed():
    cam = camera(pitch_deg=0.0, max_range_m=20.0, min_range_m=1.0)
    above = Rock(1, 0.9, 480, 300, 520, 390)  # bottom at v=390 < cy=400: sky
    on_horizon = Rock(2, 0.9, 480, 380, 520, 400)
    far = Rock(3, 0.9, 490, 395, 510, 401)  # just below the horizon: hundreds of metres away
    above, on_horizon, far = size_rocks(cam, [above, on_horizon, far])
    assert [r.size_flag for r in (above, on_horizon, far)] == ["above_horizon", "above_horizon", "beyond_max_range"]
    assert all(r.diameter_m is None and r.range_m is None for r in (above, on_horizon, far))
    near = rock_at(camera(pitch_deg=60.0, min_range_m=1.0), 0.0, 0.5, 0.2)
    (near,) = size_rocks(camera(pitch_deg=60.0, min_range_m=1.0), [near])
    assert near.size_flag == "nearer_than_min_range"
    _, in_front = cam.ground_to_pixels(np.array([[0.0, -3.0, 0.0], [0.0, 3.0, 0.0]]))
    assert in_front.tolist() == [False, True]


def test_nadir_gsd_scaling():
    cam = Camera(CameraConfig(model="nadir", image_width=400, image_height=300, gsd_m=0.02))
    rock = Rock(1, 0.9, 100, 100, 150, 150)
    (rock,) = size_rocks(cam, [rock])
    assert rock.diameter_m == pytest.approx(1.0) and rock.height_m is None
    assert (rock.ground_x_m, rock.ground_y_m) == (pytest.approx(-1.5), pytest.approx(0.5))
    from_altitude = Camera(CameraConfig(model="nadir", image_width=400, image_height=300,
                                        altitude_m=100.0, hfov_deg=90.0))
    assert from_altitude.gsd == pytest.approx(0.5)  # 2·100·tan(45°) m over 400 px
    assert cam.ground_area() == pytest.approx(400 * 300 * 0.02 ** 2)
    half = cam.for_image(200, 150)
    assert half.gsd == pytest.approx(0.04)


def test_ground_area_of_a_camera_looking_straight_down():
    cam = camera(image_width=400, image_height=400, hfov_deg=90.0, pitch_deg=90.0, height_m=2.0,
                 max_range_m=100.0)
    assert cam.ground_area() == pytest.approx(16.0, rel=0.01)  # 4 m x 4 m footprint
    exclusion = np.zeros((400, 400), np.uint8)
    exclusion[:, :200] = 1  # half the image is rover deck
    assert cam.ground_area(exclusion) == pytest.approx(8.0, rel=0.02)
    limited = camera(image_width=400, image_height=400, hfov_deg=90.0, pitch_deg=90.0, height_m=2.0,
                     max_range_m=1.0)
    assert limited.ground_area() == pytest.approx(math.pi, rel=0.03)


def test_other_image_size_scales_intrinsics_and_keeps_metric_answers():
    cam = camera()
    rock = rock_at(cam, 0.3, 5.0, 0.4)
    half = cam.for_image(500, 400)
    small = Rock(1, 0.9, rock.x_min / 2, rock.y_min / 2, rock.x_max / 2, rock.y_max / 2)
    (small,) = size_rocks(half, [small])
    assert small.diameter_m == pytest.approx(0.4, rel=0.02) and small.range_m == pytest.approx(math.hypot(0.3, 5.0), rel=0.02)
    assert cam.for_image(500, 500) is None  # another aspect ratio: another camera


@pytest.mark.parametrize("text, message", [
    ("image_width: 100\nimage_height: 100\nhfov_deg: 60\nheight_m: -1\n", "height_m must be positive"),
    ("image_width: 100\nimage_height: 100\nhfov_deg: 60\nheight_m: 1\npitch_deg: 120\n", r"pitch_deg must be in \(-90, 90\]"),
    ("image_width: 100\nimage_height: 100\nheight_m: 1\n", "give fx"),
    ("image_width: 100\nimage_height: 100\nhfov_deg: 60\nhieght_m: 1\n", r"unknown key 'hieght_m' \(did you mean 'height_m'\?\)"),
    ("model: nadir\nimage_width: 100\nimage_height: 100\naltitude_m: 5\n", r"give fx \(and fy\) or hfov_deg, or gsd_m"),
    ("model: nadir\nimage_width: 100\nimage_height: 100\n", r"give fx"),
    ("model: fisheye\n", r"'fisheye' is not one of"),
])
def test_camera_yaml_errors_name_the_file_and_problem(tmp_path, text, message):
    path = tmp_path / "cam.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"cam.yaml: .*{message}"):
        load_camera(path)


def test_shipped_cameras_load():
    paths = sorted((CONFIGS / "cameras").glob("*.yaml"))
    assert paths
    for path in paths:
        assert load_camera(path).describe()["model"] in ("perspective", "nadir")
