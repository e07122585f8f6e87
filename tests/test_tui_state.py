"""The app's small state helpers."""

from __future__ import annotations

import threading

from btd_tui.state import VerdictCache


def test_verdict_cache_keeps_the_last_used_and_knows_a_slice_without_verdict():
    cache = VerdictCache(size=2)
    assert cache.get(("s", 0)) == (False, None)
    cache.put(("s", 0), "v0")
    cache.put(("s", 1), None)  # scored, nothing in the body: remembered as such
    assert cache.get(("s", 1)) == (True, None)
    assert cache.get(("s", 0)) == (True, "v0")  # now the most recent
    cache.put(("s", 2), "v2")  # drops ("s", 1), the least recently used
    assert cache.get(("s", 1)) == (False, None)
    assert cache.get(("s", 0)) == (True, "v0") and cache.get(("s", 2)) == (True, "v2")


def test_verdict_cache_is_safe_across_threads():
    cache = VerdictCache(size=16)

    def work(offset: int) -> None:
        for i in range(2000):
            cache.put(("s", (offset + i) % 40), i)
            cache.get(("s", i % 40))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache._items) == 16
