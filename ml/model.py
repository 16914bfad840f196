"""The network: an encoder-decoder whose output is a map of tumor evidence, pooled into one probability.

    image (128, 128, 1) -> encoder (stride-2 stem, conv blocks down to 8 x 8) -> decoder (upsampling
    with lateral connections, as in a feature pyramid) -> cell logits (32, 32, 1) -> smooth maximum
    -> slice logit

Each cell's logit says whether that 4 x 4 patch of the input holds tumor. Where a slice has a
tumor mask the cells are trained against it directly; every slice trains the pooled logit. The
slice's probability is the sigmoid of the map's smooth maximum (log-mean-exp), so the heatmap
(each cell's sigmoid) explains exactly the probability that is reported: no tumor evidence
anywhere means a low probability, strong evidence in one place a high one.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from ml.preprocess import IMAGE_SIZE, MAP_STRIDE

DEFAULT_WIDTHS = (24, 32, 48, 96, 192)  # stem, then one block per resolution: 64, 32, 16, 8 px at 128
DECODER_WIDTH = 48
SHARPNESS = 4.0  # of the smooth maximum: 0 would be the map's mean, infinity its maximum


@keras.saving.register_keras_serializable(package="brainscan")
class SmoothMax(layers.Layer):
    """Log-mean-exp of a (n, h, w, 1) map: (n, 1). Between the mean and the maximum of the cells."""

    def __init__(self, sharpness: float = SHARPNESS, **kwargs):
        super().__init__(**kwargs)
        self.sharpness = sharpness

    def call(self, cells):
        flat = ops.reshape(cells, (ops.shape(cells)[0], -1))
        count = math.prod(cells.shape[1:])
        return (ops.logsumexp(self.sharpness * flat, axis=1, keepdims=True) - math.log(count)) / self.sharpness

    def get_config(self):
        return {**super().get_config(), "sharpness": self.sharpness}


@keras.saving.register_keras_serializable(package="brainscan")
class Scale(layers.Layer):
    """Divide by a fixed temperature (calibration; see ml.calibration)."""

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature

    def call(self, logits):
        return logits / self.temperature

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def _conv(x, width: int, name: str, stride: int = 1):
    x = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_network(size: int = IMAGE_SIZE, widths: tuple[int, ...] = DEFAULT_WIDTHS,
                  decoder_width: int = DECODER_WIDTH, dropout: float = 0.1) -> keras.Model:
    """(size, size, 1) standardised slice -> (size / 4, size / 4, 1) cell logits."""
    if size % 32:
        raise ValueError(f"The image size must be a multiple of 32, not {size}")
    stem, *blocks = widths
    image = keras.Input((size, size, 1), name="image")
    x = _conv(image, stem, "stem", stride=2)
    skips = []
    for index, width in enumerate(blocks):
        if index:
            x = layers.MaxPooling2D(name=f"pool{index}")(x)
        repeats = 1 if index == 0 else 2  # the first block runs at 64 px, where a convolution costs most
        for repeat in range(repeats):
            x = _conv(x, width, f"block{index}_{repeat}")
        skips.append(x)
    # Feature-pyramid decoder back to the map's resolution (size / MAP_STRIDE).
    levels_up = len(blocks) - 1 - int(math.log2(MAP_STRIDE // 2))
    y = layers.Conv2D(decoder_width, 1, name="lateral_top")(skips[-1])
    for step in range(levels_up):
        skip = skips[-2 - step]
        y = layers.UpSampling2D(name=f"up{step}")(y)
        y = layers.Add(name=f"merge{step}")([y, layers.Conv2D(decoder_width, 1, name=f"lateral{step}")(skip)])
        y = _conv(y, decoder_width, f"decoder{step}")
    y = layers.SpatialDropout2D(dropout, name="dropout")(y)
    cells = layers.Conv2D(1, 1, name="cell_logits")(y)
    return keras.Model(image, cells, name="brainscan_network")


def build_trainer(network: keras.Model, sharpness: float = SHARPNESS) -> keras.Model:
    """Two outputs for training: the slice logit (pooled) and the cell logits."""
    cells = network.output
    logit = SmoothMax(sharpness, name="logit")(cells)
    return keras.Model(network.input, {"logit": logit, "cells": layers.Identity(name="cells")(cells)},
                       name="trainer")


def build_serving_model(network: keras.Model, temperature: float = 1.0, sharpness: float = SHARPNESS) -> keras.Model:
    """One graph, two outputs: the calibrated tumor probability (n, 1) and the evidence map (n, h, w, 1),
    each cell the calibrated probability that it holds tumor.

    Calibration divides the trained slice logit by `temperature`; the cells are divided too, and
    their smooth maximum sharpened by the same factor, so the probability stays the smooth maximum
    of the map that is shown: smoothmax_s(c) / T == smoothmax_{s T}(c / T).
    """
    image = keras.Input(network.input_shape[1:], name="image")
    cells = Scale(temperature, name="calibrated_cells")(network(image))
    logit = SmoothMax(sharpness * temperature, name="logit")(cells)
    probability = layers.Activation("sigmoid", name="probability")(logit)
    evidence = layers.Activation("sigmoid", name="evidence")(cells)
    return keras.Model(image, [probability, evidence], name="brainscan_serving")


def load_serving_model(path) -> keras.Model:
    """Load a saved serving graph; importing this module registers its custom layers."""
    return keras.models.load_model(path)
