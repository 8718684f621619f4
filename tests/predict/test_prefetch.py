"""Decoding ahead in a thread: the same batches in the same order, a producer's error raised
where it happened, and a consumer that stops early leaves no thread behind and closes the source."""

import threading

import pytest

from rockdet.predict.prefetch import prefetched


def test_items_arrive_in_order_and_errors_where_they_happened():
    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        yield 2
        raise ValueError("image 3 is broken")

    seen = []
    with pytest.raises(ValueError, match="image 3 is broken"):
        for item in prefetched(broken()):
            seen.append(item)
    assert seen == [1, 2]


def test_leaving_early_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    stream = prefetched(endless(), depth=1)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert closed.is_set()
    assert not any(t.name == "rockdet-decode-ahead" for t in threading.enumerate())
