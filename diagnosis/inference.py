"""The predictor a worker process keeps for its whole life, loaded once."""

from __future__ import annotations

import threading

from django.conf import settings

from ml.predictor import Predictor
from ml.registry import ModelRegistry, ModelVersion, RegistryError

_lock = threading.Lock()
_predictor: Predictor | None = None
_loaded_from: tuple | None = None


class ModelUnavailable(RuntimeError):
    pass


def registry() -> ModelRegistry:
    return ModelRegistry(settings.MODEL_DIR)


def serving_version() -> ModelVersion:
    """The version this installation serves: BRAINSCAN_MODEL_VERSION, else the registry's active one."""
    try:
        return registry().get(settings.MODEL_VERSION) if settings.MODEL_VERSION else registry().active()
    except RegistryError as error:
        raise ModelUnavailable(str(error)) from error


def get_predictor() -> Predictor:
    """The process's predictor: loaded on first use, and again only when the served version changes.

    The served version is read at every call (one small file), so activating a new version reaches
    running workers at their next task instead of waiting for a restart.
    """
    global _predictor, _loaded_from
    version = serving_version()
    wanted = (str(version.path), settings.INFERENCE_THREADS)
    if _predictor is None or _loaded_from != wanted:
        with _lock:
            if _predictor is None or _loaded_from != wanted:
                try:
                    version.verify()
                except RegistryError as error:
                    raise ModelUnavailable(str(error)) from error
                _predictor = Predictor(version, threads=settings.INFERENCE_THREADS)
                _loaded_from = wanted
    return _predictor
