"""The engine's load report (engine/load.py): latest counts, recent slowest TTFT."""

from shardline.engine.load import EngineLoad, LoadTracker


def test_load_is_the_latest_step_and_the_slowest_recent_first_token():
    tracker = LoadTracker(window_s=10)
    tracker.record(5, 2, 0.4, [0.3, 1.2], now=100)
    tracker.record(3, 4, 0.5, [0.8], now=105)
    assert tracker.load(now=106) == EngineLoad(waiting=3, running=4, kv_cache_usage=0.5, ttft_s=1.2)


def test_first_tokens_older_than_the_window_stop_counting():
    tracker = LoadTracker(window_s=10)
    tracker.record(0, 1, 0.1, [2.0], now=100)
    tracker.record(0, 1, 0.1, [0.5], now=105)
    assert tracker.load(now=111).ttft_s == 0.5
    assert tracker.load(now=116).ttft_s == 0.0
