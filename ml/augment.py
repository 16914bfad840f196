"""Training-time augmentation: geometry a slice really varies by, and intensity a scanner does.

The intensity part matters most: the shared data set's tumor and no-tumor images come mostly
from different sequences, and a network that is shown the same anatomy at many contrasts learns
the lesion rather than the sequence. Inputs are in [0, 1] (see `ml.preprocess`).
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="brainscan")
class RandomIntensity(layers.Layer):
    """Random gamma, contrast, brightness, noise and, sometimes, inverted contrast.

    Only active in training; the identity at inference.
    """

    def __init__(self, gamma: float = 0.5, contrast: float = 0.3, noise: float = 0.04,
                 invert_rate: float = 0.15, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.gamma, self.contrast, self.noise, self.invert_rate = gamma, contrast, noise, invert_rate
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        batch = ops.shape(images)[0]
        shape = (batch, 1, 1, 1)
        head = ops.cast(images > 0.02, images.dtype)
        log_gamma = keras.random.uniform(shape, -self.gamma, self.gamma, seed=self.generator)
        x = ops.power(ops.clip(images, 1e-6, 1.0), ops.exp(log_gamma))
        # Inverting the head only (not the air) mimics T1 vs T2 contrast in which fluid flips.
        invert = ops.cast(keras.random.uniform(shape, seed=self.generator) < self.invert_rate, x.dtype)
        x = x * (1 - invert) + (1 - x) * head * invert
        scale = keras.random.uniform(shape, 1 - self.contrast, 1 + self.contrast, seed=self.generator)
        shift = keras.random.uniform(shape, -self.contrast / 3, self.contrast / 3, seed=self.generator)
        x = (x * scale + shift * head)
        x = x + keras.random.normal(ops.shape(images), stddev=self.noise, seed=self.generator) * head
        return ops.clip(x * head, 0.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "contrast": self.contrast,
                "noise": self.noise, "invert_rate": self.invert_rate, "seed": self.seed}


def build_augmentation(seed: int = 0) -> keras.Sequential:
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.06, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom((-0.1, 0.15), fill_mode="constant", seed=seed + 2),
            layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed + 3),
            RandomIntensity(seed=seed + 4),
        ],
        name="augmentation",
    )
