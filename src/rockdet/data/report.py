"""`rockdet data-report`: what is in an annotation set, and what is wrong with it.

Every record's image is opened (rasters: the header; PDS products: decoded, as training will),
one record at a time: an image that cannot be read, or whose size differs from its annotations,
is one problem line naming it, and the report goes on.
"""

from __future__ import annotations

import numpy as np

from rockdet.data.records import AnnotationSet
from rockdet.errors import failure_reason
from rockdet.io.images import image_size

#: Histogram bin edges for rock size, sqrt(box area) in pixels.
SIZE_BINS_PX = (0, 4, 8, 16, 32, 64, 128, 256, float("inf"))


def size_histogram(annotations: AnnotationSet) -> list[tuple[str, int]]:
    sizes = rock_sizes_px(annotations)
    counts, _ = np.histogram(sizes, bins=SIZE_BINS_PX)
    labels = [f"{int(lo)}-{int(hi)}" if hi != float("inf") else f">={int(lo)}"
              for lo, hi in zip(SIZE_BINS_PX[:-1], SIZE_BINS_PX[1:])]
    return list(zip(labels, counts.tolist()))


def rock_sizes_px(annotations: AnnotationSet) -> np.ndarray:
    boxes = [r.boxes for r in annotations.records if len(r.boxes)]
    if not boxes:
        return np.zeros(0)
    stacked = np.concatenate(boxes)
    return np.sqrt((stacked[:, 2] - stacked[:, 0]) * (stacked[:, 3] - stacked[:, 1]))


def check_images(annotations: AnnotationSet) -> tuple[int, list[str]]:
    """(images that open, one problem per image that does not or whose size disagrees)."""
    readable, problems, seen = 0, [], set()
    for record in annotations.records:
        if record.path in seen:
            continue
        seen.add(record.path)
        try:
            width, height = image_size(record.path)
        except Exception as exc:  # each record on its own: one broken image is one line
            problems.append(f"{record.path}: cannot be read ({failure_reason(exc)})")
            continue
        readable += 1
        if (width, height) != (record.width, record.height):
            problems.append(f"{record.path}: image is {width}x{height} but the annotations say "
                            f"{record.width}x{record.height}")
    return readable, problems


def format_report(annotations: AnnotationSet, max_problems: int = 20) -> str:
    report = annotations.report
    sizes = rock_sizes_px(annotations)
    readable, image_problems = check_images(annotations)
    distinct = len({record.path for record in annotations.records})
    lines = [f"source: {report.source}",
             f"images: {report.images} ({report.empty_images} without rocks)",
             f"images readable: {readable} of {distinct}",
             f"rocks: {report.rocks}"]
    if len(sizes):
        lines.append(f"rock size sqrt(box area) px: median {np.median(sizes):.1f}, "
                     f"min {sizes.min():.1f}, max {sizes.max():.1f}")
    histogram = size_histogram(annotations)
    peak = max((count for _, count in histogram), default=0) or 1
    lines.append("size histogram (px):")
    lines += [f"  {label:>8}  {count:6d}  {'#' * round(40 * count / peak)}" for label, count in histogram]
    if report.ignored_categories:
        lines.append("ignored categories: " + ", ".join(
            f"{name} ({count})" for name, count in sorted(report.ignored_categories.items())))
    lines.append(f"boxes clipped to the image: {report.clipped_boxes}")
    dropped = ", ".join(f"{reason}: {n}" for reason, n in report.dropped.items()) or "none"
    lines.append(f"boxes dropped: {dropped}")
    problems = report.problems + image_problems
    if problems:
        lines.append(f"problems ({len(problems)}):")
        lines += [f"  {p}" for p in problems[:max_problems]]
        if len(problems) > max_problems:
            lines.append(f"  ... and {len(problems) - max_problems} more")
    return "\n".join(lines)
