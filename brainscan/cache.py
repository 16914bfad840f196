"""Django's Redis cache, made to ride out a Redis outage.

The cache holds only what may be lost (the API's request counts); sessions, login failures and
studies live in the database. Django's own Redis cache raises while Redis is down, which would turn
every API request into an error for as long as a broker outage lasts. This one answers as an empty
cache instead and drops writes, so request limits go unenforced until Redis is back.
"""

from __future__ import annotations

import logging
import time

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
_WARN_EVERY_SECONDS = 30
_last_warning = 0.0


def _warn(error: Exception) -> None:
    global _last_warning
    if time.monotonic() - _last_warning > _WARN_EVERY_SECONDS:
        _last_warning = time.monotonic()
        log.warning("Redis cache unavailable (%s); serving without it", type(error).__name__)


class OutageTolerantRedisCache(RedisCache):
    """Each operation answers as an empty cache would while Redis is down."""

    @staticmethod
    def _or(fallback, operation, *args):
        try:
            return operation(*args)
        except REDIS_DOWN as error:
            _warn(error)
            return fallback

    def get(self, key, default=None, version=None):
        return self._or(default, super().get, key, default, version)

    def get_many(self, keys, version=None):
        return self._or({}, super().get_many, keys, version)

    def has_key(self, key, version=None):
        return self._or(False, super().has_key, key, version)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._or(False, super().add, key, value, timeout, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        self._or(None, super().set, key, value, timeout, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._or(list(data), super().set_many, data, timeout, version)  # every key failed

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._or(False, super().touch, key, timeout, version)

    def delete(self, key, version=None):
        return self._or(False, super().delete, key, version)

    def delete_many(self, keys, version=None):
        self._or(None, super().delete_many, keys, version)
