"""The cache (the API's request counts) rides out a Redis outage instead of failing every request."""

import shutil

import pytest

from stack.processes import RedisServer
from brainscan.cache import OutageTolerantRedisCache
from tests.conftest import need

pytestmark = pytest.mark.no_db


def test_the_cache_reads_as_empty_while_redis_is_down_and_works_again_after(tmp_path):
    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    redis = RedisServer(tmp_path).start()
    try:
        cache = OutageTolerantRedisCache(redis.url, {"OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2}})
        cache.set("throttle_user_1", [1.0, 2.0])
        assert cache.get("throttle_user_1") == [1.0, 2.0]

        redis.stop()
        assert cache.get("throttle_user_1", "fallback") == "fallback"
        assert cache.get_many(["a", "b"]) == {} and cache.has_key("a") is False and cache.add("a", 1) is False
        assert cache.set_many({"a": 1}) == ["a"] and cache.touch("a") is False and cache.delete("a") is False
        cache.set("throttle_user_1", [3.0])
        cache.delete_many(["a"])

        redis.start()  # memory-only: it comes back empty
        assert cache.get("throttle_user_1") is None
        cache.set("throttle_user_1", [4.0])
        assert cache.get("throttle_user_1") == [4.0]
    finally:
        redis.stop()
