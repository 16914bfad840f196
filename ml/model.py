"""The CNN: convolutional blocks, global average pooling, one dense logit.

With a global-average-pooling head followed by a single dense layer, the class activation map
(the dense layer applied at every position of the last feature maps) is exactly Grad-CAM for
this network, so the serving model returns it as a second output and needs no gradient.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from ml.preprocess import IMAGE_SIZE

DEFAULT_FILTERS = (32, 64, 128, 256, 256)


@keras.saving.register_keras_serializable(package="brainscan")
class PerImageStandardization(layers.Layer):
    """Zero mean, unit variance over the head (pixels above `floor`), per image.

    Makes the network blind to a scanner's or sequence's overall brightness and contrast.
    """

    def __init__(self, floor: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.floor = floor

    def call(self, images):
        mask = ops.cast(images > self.floor, images.dtype)
        count = ops.maximum(ops.sum(mask, axis=(1, 2, 3), keepdims=True), 1.0)
        mean = ops.sum(images * mask, axis=(1, 2, 3), keepdims=True) / count
        variance = ops.sum(ops.square(images - mean) * mask, axis=(1, 2, 3), keepdims=True) / count
        return (images - mean) / ops.sqrt(variance + 1e-6)

    def get_config(self):
        return {**super().get_config(), "floor": self.floor}


def build_classifier(size: int = IMAGE_SIZE, filters: tuple[int, ...] = DEFAULT_FILTERS,
                     dropout: float = 0.3) -> keras.Model:
    """(size, size, 1) in [0, 1] -> tumor probability (1,).

    Every block but the last halves the resolution, so a 128 px input gives 8x8 feature maps,
    the resolution of the heatmap.
    """
    inputs = keras.Input((size, size, 1), name="image")
    x = PerImageStandardization(name="standardize")(inputs)
    for index, width in enumerate(filters):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.ReLU(name=f"relu{index}")(x)
        if index < len(filters) - 1:
            x = layers.MaxPooling2D(name=f"pool{index}")(x)
    features = x
    x = layers.GlobalAveragePooling2D(name="gap")(features)
    x = layers.Dropout(dropout, name="dropout")(x)
    logit = layers.Dense(1, name="logit")(x)
    probability = layers.Activation("sigmoid", name="probability")(logit)
    return keras.Model(inputs, probability, name="brainscan_cnn")


@keras.saving.register_keras_serializable(package="brainscan")
class MirrorLeftRight(layers.Layer):
    """Flip images or maps left to right (axis 2 of NHWC)."""

    def call(self, images):
        return ops.flip(images, axis=2)


def build_serving_model(classifiers: keras.Model | list[keras.Model]) -> keras.Model:
    """One graph, two outputs: the tumor probability and the class activation map.

    The dense layer applied at each cell of a network's last feature maps gives a map of logits
    whose mean is the network's logit, because averaging and a linear layer commute. Each network
    assesses the slice and its mirror image (a brain is roughly symmetric, a lesion may be on either
    side); all maps are averaged, the mirrors' flipped back, and the probability is the sigmoid of
    the averaged map's mean: the heatmap explains exactly the probability that is reported.
    """
    classifiers = classifiers if isinstance(classifiers, list) else [classifiers]
    image = keras.Input(classifiers[0].input_shape[1:], name="image")
    mirrored = MirrorLeftRight(name="mirror")(image)
    maps = []
    for index, classifier in enumerate(classifiers):
        features = classifier.get_layer(f"relu{_last_block(classifier)}").output
        cell_logits = keras.Model(classifier.input, classifier.get_layer("logit")(features),
                                  name=f"cell_logits_{index}")
        maps += [cell_logits(image), MirrorLeftRight(name=f"unmirror_{index}")(cell_logits(mirrored))]
    cam = layers.Average(name="cam")(maps)
    logit = layers.GlobalAveragePooling2D(name="mean_logit")(cam)
    probability = layers.Activation("sigmoid", name="probability")(logit)
    return keras.Model(image, [probability, cam], name="brainscan_serving")


def _last_block(classifier: keras.Model) -> int:
    return max(int(layer.name[4:]) for layer in classifier.layers if layer.name.startswith("relu"))


def load_serving_model(path) -> keras.Model:
    """Load a saved serving graph; importing this module registers its custom layers."""
    return keras.models.load_model(path)
