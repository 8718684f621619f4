"""Decoding ahead of the model, in a thread: the next images are read and cut into tiles while
the model runs on this batch.

Image decoding (Pillow, OpenCV), hashing and tile cutting (NumPy) release the GIL, and so do
OpenVINO, ONNX Runtime and PyTorch while they compute; a thread overlaps them without the
process start and the pickled tiles of a DataLoader worker (`--workers N` still adds those).
"""

from __future__ import annotations

import threading
from queue import Empty, Full, Queue
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

#: Batches decoded ahead of the one the model runs on: enough to cover one slow image.
DEPTH = 2
#: How often a waiting producer checks whether the consumer has gone.
POLL_SECONDS = 0.1


def prefetched(items: Iterable[T], depth: int = DEPTH) -> Iterator[T]:
    """``items`` in order, produced up to ``depth`` ahead by a background thread; whatever the
    producer raises is raised here, at the item where it happened. Leaving early stops and closes
    the producer (a generator's ``finally`` then runs in its own thread, e.g. closing a file)."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def hand_over(entry) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=POLL_SECONDS)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not hand_over((item, None)):
                    return
            hand_over((done, None))
        except BaseException as exc:  # the consumer re-raises it where the item would have been
            hand_over((None, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="rockdet-decode-ahead", daemon=True)
    producer.start()
    try:
        while True:
            try:
                item, error = queue.get(timeout=POLL_SECONDS)
            except Empty:
                if not producer.is_alive() and queue.empty():
                    raise RuntimeError("the decoding thread ended without a result") from None
                continue
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        producer.join()
