"""Images that are not a brain MRI slice, made here from nothing, to teach the quality gate what to refuse.

Nothing is downloaded, and the sample images bundled with scikit-image and pydicom are kept out:
they are reserved for testing the gate. The kinds, each drawn at random sizes, contrasts and
positions from a seeded generator:

- document: lines of rendered text, rules and tables, dark on light or light on dark;
- texture: gratings, checkerboards, fractal (1/f) noise, wood rings, bricks;
- shapes: polygons, discs and boxes on plain or gradient backgrounds;
- natural: "dead leaves" scenes (overlapping discs, the classic model of natural-image statistics),
  a horizon with sky and ground;
- ultrasound: a speckled fan on black;
- microscopy: a field of cell-like blobs, bright on dark or dark on light;
- radiograph: smooth large bright structures (arcs like ribs, a column) on a dark field;
- brain_part: a small crop of a real slice (less than a fifth of it), or a 2 x 2 montage of slices.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ml.preprocess import resize

KINDS = ("document", "texture", "shapes", "natural", "ultrasound", "microscopy", "radiograph", "brain_part")
SIZE = 224
WORDS = ("patient", "report", "scan", "result", "normal", "table", "total", "date", "invoice", "summary", "the",
         "and", "of", "image", "dose", "page", "figure", "value", "mean", "study", "brain", "MRI", "2026")


def _unit(image: np.ndarray) -> np.ndarray:
    low, high = float(image.min()), float(image.max())
    return ((image - low) / (high - low) if high > low else np.zeros_like(image)).astype(np.float32)


def fractal_noise(rng: np.random.Generator, size: int = SIZE, exponent: float | None = None) -> np.ndarray:
    """Noise whose spectrum falls as 1/f^exponent: clouds, the texture of many photographs."""
    exponent = rng.uniform(1.0, 2.5) if exponent is None else exponent
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / radius**exponent
    return _unit(np.real(np.fft.ifft2(spectrum)))


def document(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    paper, ink = (255, int(rng.integers(0, 90))) if rng.random() < 0.8 else (int(rng.integers(0, 60)), 230)
    canvas = Image.new("L", (size, size), paper)
    draw = ImageDraw.Draw(canvas)
    y = int(rng.integers(2, 20))
    while y < size - 8:
        font = ImageFont.load_default(size=int(rng.integers(8, 22)))
        if rng.random() < 0.15:
            draw.line([(4, y), (size - 4, y)], fill=ink, width=int(rng.integers(1, 3)))
            y += 6
            continue
        text = " ".join(rng.choice(WORDS, int(rng.integers(2, 9))))
        draw.text((int(rng.integers(2, 30)), y), text, fill=ink, font=font)
        y += int(font.size * rng.uniform(1.2, 2.0))
    if rng.random() < 0.3:  # a table grid
        for x in np.linspace(10, size - 10, int(rng.integers(3, 6))):
            draw.line([(int(x), 10), (int(x), size - 10)], fill=ink, width=1)
    return np.asarray(canvas, np.float32) / 255.0


def texture(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = rng.integers(5)
    if kind == 0:
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 40)
        return 0.5 + 0.5 * np.sin(2 * np.pi * (cols * np.cos(angle) + rows * np.sin(angle)) / period)
    if kind == 1:
        cell = int(rng.integers(4, 40))
        return ((rows // cell + cols // cell) % 2).astype(np.float32)
    if kind == 2:
        return fractal_noise(rng, size)
    if kind == 3:
        centre = rng.uniform(-size, 2 * size, 2)
        distance = np.hypot(rows - centre[0], cols - centre[1]) + 8 * fractal_noise(rng, size)
        return 0.5 + 0.5 * np.sin(distance / rng.uniform(2, 8))
    brick_h, brick_w = int(rng.integers(8, 30)), int(rng.integers(20, 60))
    offset = (rows // brick_h % 2) * brick_w // 2
    mortar = (rows % brick_h < 2) | ((cols + offset) % brick_w < 2)
    return np.where(mortar, 0.9, 0.4 + 0.2 * fractal_noise(rng, size)).astype(np.float32)


def shapes(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    background = int(rng.integers(0, 256))
    canvas = Image.new("L", (size, size), background)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 12))):
        fill = int(rng.integers(0, 256))
        x0, y0 = rng.integers(-20, size, 2)
        x1, y1 = x0 + rng.integers(10, size), y0 + rng.integers(10, size)
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse([int(x0), int(y0), int(x1), int(y1)], fill=fill)
        elif kind == 1:
            draw.rectangle([int(x0), int(y0), int(x1), int(y1)], fill=fill)
        else:
            draw.polygon([tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(int(rng.integers(3, 7)))],
                         fill=fill)
    image = np.asarray(canvas, np.float32) / 255.0
    if rng.random() < 0.4:
        image = 0.7 * image + 0.3 * np.linspace(0, 1, size, dtype=np.float32)[None, :]
    return image


def natural(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    if rng.random() < 0.6:  # dead leaves
        image = np.full((size, size), rng.random(), np.float32)
        rows, cols = np.mgrid[0:size, 0:size]
        for _ in range(int(rng.integers(60, 250))):
            radius = size * rng.uniform(0.01, 0.2) ** 1.5 * 3
            centre = rng.uniform(0, size, 2)
            image[(rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < radius**2] = rng.random()
        return ndimage.gaussian_filter(image, rng.uniform(0, 1.5)) * 0.85 + 0.15 * fractal_noise(rng, size)
    horizon = int(size * rng.uniform(0.3, 0.7))
    sky = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(0.3, 0.8), horizon, dtype=np.float32)[:, None]
    ground = 0.2 + 0.4 * fractal_noise(rng, size)[horizon:]
    image = np.concatenate([np.repeat(sky, size, axis=1), ground])
    return np.clip(image + 0.1 * fractal_noise(rng, size), 0, 1)


def ultrasound(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    apex = (rng.uniform(-10, 10), size / 2 + rng.uniform(-20, 20))
    radius = np.hypot(rows - apex[0], cols - apex[1])
    angle = np.arctan2(cols - apex[1], rows - apex[0])
    fan = (np.abs(angle) < rng.uniform(0.5, 0.9)) & (radius < size * rng.uniform(0.8, 1.0)) & (radius > 15)
    speckle = rng.rayleigh(0.3, (size, size)).astype(np.float32)
    structure = 0.4 + 0.6 * fractal_noise(rng, size, exponent=2.0)
    return np.clip(fan * speckle * structure, 0, 1)


def microscopy(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    image = np.zeros((size, size), np.float32)
    rows, cols = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(10, 80))):
        centre, radius = rng.uniform(0, size, 2), rng.uniform(4, 18)
        image += rng.uniform(0.3, 1.0) * np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / radius**2)
    image = _unit(image + 0.15 * fractal_noise(rng, size))
    return 1 - image if rng.random() < 0.4 else image


def radiograph(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    image = 0.1 + 0.2 * fractal_noise(rng, size, exponent=2.5)
    centre = size / 2 + rng.uniform(-20, 20)
    image += 0.5 * np.exp(-((cols - centre) / rng.uniform(8, 20)) ** 2)  # a spine-like column
    for k in range(int(rng.integers(4, 10))):  # rib-like arcs
        y0 = size * (0.1 + 0.09 * k)
        arc = np.abs(rows - (y0 + 0.004 * (cols - centre) ** 2))
        image += 0.35 * np.exp(-(arc / rng.uniform(2, 5)) ** 2)
    return _unit(ndimage.gaussian_filter(image, 1.0))


def brain_part(rng: np.random.Generator, slices: list[np.ndarray], size: int = SIZE) -> np.ndarray:
    """A small crop of a real slice, or a 2 x 2 montage: brain, but not one whole slice."""
    if rng.random() < 0.6:
        gray = slices[int(rng.integers(len(slices)))]
        height, width = gray.shape
        side = int(min(height, width) * rng.uniform(0.2, 0.42))
        top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
        return resize(gray[top:top + side, left:left + side], size)
    picks = [resize(slices[int(rng.integers(len(slices)))], size // 2) for _ in range(4)]
    return np.block([[picks[0], picks[1]], [picks[2], picks[3]]]).astype(np.float32)


def negative(kind: str, rng: np.random.Generator, slices: list[np.ndarray], size: int = SIZE) -> np.ndarray:
    """One image of `kind` (see KINDS) in [0, 1]."""
    if kind == "brain_part":
        return brain_part(rng, slices, size)
    maker = {"document": document, "texture": texture, "shapes": shapes, "natural": natural,
             "ultrasound": ultrasound, "microscopy": microscopy, "radiograph": radiograph}[kind]
    return np.clip(maker(rng, size), 0.0, 1.0).astype(np.float32)
