"""The on-disk picture cache: round trip, LRU eviction past the cap, surviving a restart."""

import os
import time

import pytest

from inference.cache import ImageCache

KEYS = [f"{i:02x}" + "ab" * 31 for i in range(5)]


def test_round_trip_and_restart(tmp_path):
    cache = ImageCache(tmp_path)
    cache.put(KEYS[0], b"png-bytes", {"seed": 5})
    assert cache.get(KEYS[0]).png == b"png-bytes"
    assert cache.get(KEYS[0]).meta == {"seed": 5}
    assert cache.get(KEYS[1]) is None
    reopened = ImageCache(tmp_path)
    assert KEYS[0] in reopened and len(reopened) == 1
    assert reopened.get(KEYS[0]).meta["seed"] == 5


def test_least_recently_used_entries_go_first_past_the_cap(tmp_path):
    cache = ImageCache(tmp_path, max_bytes=3 * 1100)
    for key in KEYS[:3]:
        cache.put(key, b"x" * 1000, {})
        time.sleep(0.01)
    cache.get(KEYS[0])  # used again: now the most recent
    cache.put(KEYS[3], b"x" * 1000, {})
    assert KEYS[1] not in cache  # the least recently used
    assert KEYS[0] in cache and KEYS[3] in cache
    assert not (tmp_path / KEYS[1][:2] / f"{KEYS[1]}.png").exists()
    assert cache.total_bytes <= 3 * 1100


def test_eviction_order_survives_a_restart(tmp_path):
    cache = ImageCache(tmp_path, max_bytes=2 * 1100)
    cache.put(KEYS[0], b"x" * 1000, {})
    cache.put(KEYS[1], b"x" * 1000, {})
    old = time.time() - 1000
    os.utime(tmp_path / KEYS[1][:2] / f"{KEYS[1]}.png", (old, old))
    reopened = ImageCache(tmp_path, max_bytes=2 * 1100)
    reopened.put(KEYS[2], b"x" * 1000, {})
    assert KEYS[1] not in reopened and KEYS[0] in reopened


def test_keys_must_be_digests(tmp_path):
    with pytest.raises(ValueError, match="hex digest"):
        ImageCache(tmp_path).get("../../etc/passwd")
