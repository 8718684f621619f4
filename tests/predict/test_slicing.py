"""Tiling windows, shifting and merging across tile borders."""

import numpy as np
import pytest
import torch

from rockdet.predict.merge import merge_detections
from rockdet.predict.tiling import cut_tile, shift_boxes, tile_windows


@pytest.mark.parametrize("height, width, tile, overlap", [
    (1728, 2352, 512, 0.2), (100, 100, 512, 0.2), (512, 513, 512, 0.25), (300, 2000, 256, 0.1),
    (1000, 1000, 250, 0.0)])
def test_windows_cover_image_exactly_with_requested_overlap(height, width, tile, overlap):
    windows = tile_windows(height, width, tile, overlap)
    covered = torch.zeros(height, width, dtype=torch.int32)
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert x1 - x0 == min(tile, width) and y1 - y0 == min(tile, height)
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1  # every pixel, edges included
    xs = sorted({w[0] for w in windows})
    for left, right in zip(xs, xs[1:]):
        assert left + tile - right >= overlap * tile - 1  # neighbours overlap at least as asked
    assert max(w[2] for w in windows) == width and max(w[3] for w in windows) == height


def test_no_tiling_when_image_fits():
    assert tile_windows(100, 80, 512, 0.2) == [(0, 0, 80, 100)]


def test_bad_tiling_arguments():
    with pytest.raises(ValueError, match="overlap"):
        tile_windows(10, 10, 5, 1.0)


def test_shift_boxes():
    boxes = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert shift_boxes(boxes, (10, 20)).tolist() == [[11.0, 22.0, 13.0, 24.0]]


def test_rock_split_by_tile_border_becomes_one_rock():
    # One rock at x 90..130 in a 200 px image, tiles of 120 with overlap 0.4: windows at x 0, 40, 80.
    rock = torch.tensor([90.0, 40.0, 130.0, 70.0])
    windows = tile_windows(120, 200, 120, 0.4)
    detections, scores = [], []
    for x0, y0, x1, _ in windows:
        visible = torch.tensor([max(rock[0], x0), rock[1], min(rock[2], x1), rock[3]]) - torch.tensor([x0, y0, x0, y0])
        if visible[2] > visible[0]:
            detections.append(shift_boxes(visible[None], (x0, y0))[0])
            scores.append(0.9 if visible[2] - visible[0] == 40 else 0.7)
    assert len(detections) == 3 and detections[0].tolist() == [90, 40, 120, 70]  # cut at x=120
    boxes, merged_scores, groups = merge_detections(torch.stack(detections), torch.tensor(scores), 0.5, "ios", "nmm")
    assert boxes.tolist() == [rock.tolist()] and merged_scores.tolist() == [pytest.approx(0.9)]
    assert sorted(groups[0]) == [0, 1, 2]
    # A rock cut to a third of its width: IoU alone keeps the sliver as a second rock, IoS does not.
    pair = torch.tensor([[90.0, 40, 130, 70], [90, 40, 103, 70]])
    assert len(merge_detections(pair, torch.tensor([0.9, 0.6]), 0.5, "iou", "nms")[0]) == 2
    assert len(merge_detections(pair, torch.tensor([0.9, 0.6]), 0.5, "ios", "nms")[0]) == 1


def test_separate_rocks_are_not_merged():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [1, 1, 9, 9]])
    kept, scores, groups = merge_detections(boxes, torch.tensor([0.5, 0.8, 0.9]), 0.5, "ios", "nms")
    assert kept.tolist() == [[1, 1, 9, 9], [20, 20, 30, 30]]
    assert groups == [[2], [1]]  # nms: a kept box is made of itself alone
    empty, _, _ = merge_detections(torch.zeros((0, 4)), torch.zeros(0))
    assert empty.shape == (0, 4)


def brute_force_merge(boxes, scores, threshold, method):
    """Reference: the same greedy rule, written plainly with the full overlap matrix."""
    from rockdet.predict.merge import box_ios

    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = sorted(range(len(boxes)), key=lambda i: (-float(scores[i]), -float(areas[i])))
    overlap = box_ios(boxes, boxes) > threshold
    free, kept, kept_scores, kept_groups = set(range(len(boxes))), [], [], []
    for i in order:
        if i not in free:
            continue
        members = [j for j in order if j in free and bool(overlap[i, j])]
        free -= set(members)
        group = boxes[members]
        kept.append(boxes[i] if method == "nms" else torch.cat([group[:, :2].min(0).values, group[:, 2:].max(0).values]))
        kept_scores.append(scores[i])
        kept_groups.append([i] if method == "nms" else members)
    return torch.stack(kept), torch.stack(kept_scores), kept_groups


@pytest.mark.parametrize("method", ["nms", "nmm"])
@pytest.mark.parametrize("seed", range(3))
def test_merge_matches_brute_force_reference(seed, method):
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(150, 2, generator=generator) * 140
    wh = torch.rand(150, 2, generator=generator) * 20 + 1
    boxes = torch.cat([xy, xy + wh], 1).double()
    scores = torch.randint(1, 6, (150,), generator=generator).double() / 5  # many ties
    fast = merge_detections(boxes, scores, 0.5, "ios", method)
    slow = brute_force_merge(boxes, scores, 0.5, method)
    assert torch.allclose(fast[0], slow[0]) and torch.allclose(fast[1], slow[1])
    assert [sorted(g) for g in fast[2]] == [sorted(g) for g in slow[2]]


def test_tiles_hold_every_8bit_value_divided_by_255():
    # Each 8-bit value once per channel, shifted between channels: the tile is pixel / 255 in
    # float32 exactly, as the detectors were trained on.
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    pixels = np.stack([values, np.roll(values, 1), np.roll(values, 2)], axis=2)
    tile = cut_tile(np.pad(pixels, ((0, 4), (0, 4), (0, 0))), (0, 0, 16, 16), 20)
    expected = np.divide(pixels.transpose(2, 0, 1), np.float32(255.0), dtype=np.float32)
    assert tile.dtype == torch.float32 and tile.shape == (3, 20, 20)
    assert np.array_equal(tile[:, :16, :16].numpy(), expected)
    assert not tile[:, 16:, :].any() and not tile[:, :, 16:].any()  # zero padding to the tile size
