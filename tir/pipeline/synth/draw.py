"""Draw a synthetic pedestrian with Pillow: front view, figure coordinates in units of its height.

A figure point ``(x, y)`` has ``x`` from the body's centre line (the person's left is the
image's right, as in a front view) and ``y`` from the top of the head, both as fractions of the
figure's height; :class:`_Canvas` maps them to pixels with the image's jitter (scale, offset).
"""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from tir.pipeline.synth.appearance import COLOURS, HAIR_COLOURS, RGB, Identity, Jitter

DEFAULT_SIZE = (64, 160)  # width, height in pixels

SHOULDER_Y, WAIST_Y, HIP_Y, ANKLE_Y = 0.16, 0.47, 0.50, 0.93
HEAD = (0.0, 0.075, 0.052, 0.064)  # centre x, centre y, x radius, y radius
TOP_HEM = {"jacket": 0.53, "coat": 0.68, "dress": 0.72}


def _shade(rgb: RGB, factor: float) -> RGB:
    return tuple(max(0, min(255, int(c * factor))) for c in rgb)  # type: ignore[return-value]


class _Canvas:
    """An image plus the figure-to-pixel mapping."""

    def __init__(self, size: tuple[int, int], jitter: Jitter) -> None:
        width, height = size
        self.image = Image.new("RGB", size, jitter.background)
        self.draw = ImageDraw.Draw(self.image)
        self.unit = jitter.scale * height
        self.cx = width / 2 + jitter.dx * width
        self.top = (height - self.unit) * jitter.dy

    def p(self, x: float, y: float) -> tuple[float, float]:
        return self.cx + x * self.unit, self.top + y * self.unit

    def poly(self, points: list[tuple[float, float]], fill: RGB) -> None:
        self.draw.polygon([self.p(x, y) for x, y in points], fill=fill)

    def ellipse(self, x: float, y: float, rx: float, ry: float, fill: RGB | None, outline: RGB | None = None) -> None:
        (x0, y0), (x1, y1) = self.p(x - rx, y - ry), self.p(x + rx, y + ry)
        self.draw.ellipse([x0, y0, x1, y1], fill=fill, outline=outline)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        (a, b), (c, d) = self.p(x0, y0), self.p(x1, y1)
        self.draw.rectangle([min(a, c), min(b, d), max(a, c), max(b, d)], fill=fill)

    def line(self, points: list[tuple[float, float]], fill: RGB, width: float) -> None:
        self.draw.line([self.p(x, y) for x, y in points], fill=fill, width=max(1, round(width * self.unit)))

    def limb(self, start: tuple[float, float], end: tuple[float, float], w0: float, w1: float, fill: RGB) -> None:
        """A tapered quadrilateral from ``start`` (half width ``w0``) to ``end`` (half width ``w1``)."""
        dx, dy = end[0] - start[0], end[1] - start[1]
        length = math.hypot(dx, dy) or 1.0
        nx, ny = -dy / length, dx / length
        self.poly(
            [
                (start[0] + nx * w0, start[1] + ny * w0),
                (end[0] + nx * w1, end[1] + ny * w1),
                (end[0] - nx * w1, end[1] - ny * w1),
                (start[0] - nx * w0, start[1] - ny * w0),
            ],
            fill,
        )


def _background(canvas: _Canvas, jitter: Jitter) -> None:
    width, height = canvas.image.size
    rng = random.Random(jitter.texture_seed)
    horizon = int(height * rng.uniform(0.72, 0.88))
    canvas.draw.rectangle([0, horizon, width, height], fill=jitter.ground)
    line = _shade(jitter.background, 0.8)
    if jitter.texture == "tiles":
        step = rng.randint(8, 16)
        for y in range(horizon, height, step // 2):
            canvas.draw.line([0, y, width, y], fill=_shade(jitter.ground, 0.85))
        for x in range(rng.randrange(step), width, step):
            canvas.draw.line([x, horizon, x, height], fill=_shade(jitter.ground, 0.85))
    elif jitter.texture == "wall":
        step = rng.randint(6, 14)
        for y in range(rng.randrange(step), horizon, step):
            canvas.draw.line([0, y, width, y], fill=line)
    elif jitter.texture == "clutter":
        for _ in range(rng.randint(2, 5)):
            x, y = rng.randrange(width), rng.randrange(horizon)
            w, h = rng.randint(6, width // 2), rng.randint(6, height // 3)
            tone = _shade(jitter.background, rng.uniform(0.7, 1.25))
            canvas.draw.rectangle([x, y, x + w, y + h], fill=tone)


def _arm_points(side: int, swing: float, bent: bool) -> tuple[tuple[float, float], ...]:
    """Shoulder, elbow and hand of one arm; ``side`` is +1 for the person's left (image right)."""
    shoulder = (side * 0.105, SHOULDER_Y + 0.02)
    angle = math.radians(swing)
    elbow = (shoulder[0] + side * 0.155 * math.sin(angle), shoulder[1] + 0.155 * math.cos(angle))
    fore = math.radians(swing * 0.5 + (55 if bent else 0))
    hand = (elbow[0] + side * 0.14 * math.sin(fore) * (0.4 if bent else 1), elbow[1] + 0.14 * math.cos(fore))
    return shoulder, elbow, hand


def _pattern_layer(canvas: _Canvas, identity: Identity, mask: Image.Image) -> None:
    """Stripes, checks or a logo in the top's second colour, clipped to ``mask``."""
    if identity.pattern == "plain":
        return
    colour = COLOURS[identity.top_colours[1]]
    layer = Image.new("RGB", canvas.image.size, colour)
    shape = Image.new("L", canvas.image.size, 0)
    pen = ImageDraw.Draw(shape)
    width, height = canvas.image.size
    step = max(3, round(0.034 * canvas.unit))
    thick = max(1, step // 2)
    if identity.pattern in ("striped", "checked"):
        for y in range(0, height, step):
            pen.rectangle([0, y, width, y + thick - 1], fill=255)
    if identity.pattern == "checked":
        for x in range(0, width, step):
            pen.rectangle([x, 0, x + thick - 1, height], fill=255)
    if identity.pattern == "logo":
        (x0, y0), (x1, y1) = canvas.p(-0.045, 0.22), canvas.p(0.045, 0.31)
        pen.ellipse([x0, y0, x1, y1], fill=255)
    canvas.image.paste(layer, (0, 0), ImageChops.multiply(shape, mask))


def _top(canvas: _Canvas, identity: Identity) -> None:
    colour = COLOURS[identity.top_colours[0]]
    hem = TOP_HEM.get(identity.top, HIP_Y + 0.02)
    flare = {"coat": 0.125, "dress": 0.16}.get(identity.top, 0.095)
    body = [(-0.11, SHOULDER_Y), (0.11, SHOULDER_Y), (0.088, WAIST_Y - 0.05), (flare, hem), (-flare, hem), (-0.088, WAIST_Y - 0.05)]
    mask = Image.new("L", canvas.image.size, 0)
    ImageDraw.Draw(mask).polygon([canvas.p(x, y) for x, y in body], fill=255)
    canvas.poly(body, colour)
    _pattern_layer(canvas, identity, mask)
    dark = _shade(colour, 0.6)
    if identity.top == "shirt":
        canvas.poly([(-0.04, SHOULDER_Y), (0.0, SHOULDER_Y + 0.05), (0.04, SHOULDER_Y)], _shade(colour, 1.25))
        canvas.line([(0.0, SHOULDER_Y + 0.05), (0.0, hem)], dark, 0.008)
    elif identity.top in ("jacket", "coat"):
        canvas.line([(0.0, SHOULDER_Y + 0.01), (0.0, hem)], dark, 0.012)
        canvas.poly([(-0.03, SHOULDER_Y), (0.0, SHOULDER_Y + 0.09), (0.03, SHOULDER_Y)], dark)
    elif identity.top == "sweater":
        canvas.rect(-0.095, hem - 0.03, 0.095, hem, dark)
    elif identity.top == "hoodie":
        canvas.rect(-0.06, 0.36, 0.06, 0.43, dark)
    elif identity.top in ("t-shirt", "blouse", "dress"):
        canvas.ellipse(0.0, SHOULDER_Y, 0.035, 0.018, identity.skin)


def _arms(canvas: _Canvas, identity: Identity, jitter: Jitter) -> dict[int, tuple[float, float]]:
    """Draw both arms (sleeves over skin) and return the hand position per side."""
    hands = {}
    sleeve = COLOURS[identity.top_colours[0]]
    for side, swing in ((-1, jitter.arm_swing[0]), (1, jitter.arm_swing[1])):
        holds = identity.bag == "handbag" and side == _side(identity.bag_side)
        shoulder, elbow, hand = _arm_points(side, swing, holds)
        canvas.limb(shoulder, elbow, 0.026, 0.022, identity.skin)
        canvas.limb(elbow, hand, 0.022, 0.018, identity.skin)
        if identity.sleeves == "long":
            canvas.limb(shoulder, elbow, 0.03, 0.025, sleeve)
            canvas.limb(elbow, hand, 0.025, 0.021, sleeve)
        elif identity.sleeves == "short":
            mid = (shoulder[0] + 0.5 * (elbow[0] - shoulder[0]), shoulder[1] + 0.5 * (elbow[1] - shoulder[1]))
            canvas.limb(shoulder, mid, 0.031, 0.028, sleeve)
        canvas.ellipse(hand[0], hand[1], 0.022, 0.024, identity.skin)
        hands[side] = hand
    return hands


def _side(name: str) -> int:
    return 1 if name == "left" else -1


def _legs(canvas: _Canvas, identity: Identity, jitter: Jitter) -> None:
    spread = 0.02 + 0.05 * jitter.leg_spread
    colour = COLOURS[identity.bottom_colour] if identity.bottom_colour else None
    cover = {"pants": ANKLE_Y, "jeans": ANKLE_Y, "shorts": 0.66}.get(identity.bottom or "", 0.0)
    for side in (-1, 1):
        hip, ankle = (side * 0.045, HIP_Y), (side * (0.04 + spread), ANKLE_Y)
        canvas.limb(hip, ankle, 0.04, 0.024, identity.skin)
        if colour and cover:
            t = (cover - HIP_Y) / (ANKLE_Y - HIP_Y)
            end = (hip[0] + t * (ankle[0] - hip[0]), cover)
            canvas.limb(hip, end, 0.05, 0.05 - t * 0.022, colour)
            if identity.bottom == "jeans":
                canvas.line([hip, end], _shade(colour, 1.3), 0.006)
    if colour:
        canvas.rect(-0.092, WAIST_Y, 0.092, HIP_Y + 0.05, colour)
        if identity.bottom == "skirt":
            canvas.poly([(-0.09, WAIST_Y), (0.09, WAIST_Y), (0.13, 0.68), (-0.13, 0.68)], colour)
    shoe = COLOURS[identity.shoe_colours[0]]
    trim = COLOURS[identity.shoe_colours[-1]]
    for side in (-1, 1):
        x = side * (0.04 + spread)
        if identity.shoes == "boots":
            canvas.rect(x - 0.03, 0.85, x + 0.03, ANKLE_Y + 0.03, shoe)
        if identity.shoes == "sandals":
            canvas.rect(x - 0.038, ANKLE_Y + 0.025, x + side * 0.01 + 0.038, ANKLE_Y + 0.045, shoe)
            canvas.line([(x - 0.02, ANKLE_Y + 0.0), (x + 0.02, ANKLE_Y + 0.025)], shoe, 0.012)
        else:
            canvas.ellipse(x + side * 0.012, ANKLE_Y + 0.028, 0.042, 0.022, shoe)
            canvas.rect(x - 0.042 + side * 0.012, ANKLE_Y + 0.042, x + 0.042 + side * 0.012, ANKLE_Y + 0.05, trim)


def _head(canvas: _Canvas, identity: Identity) -> None:
    hx, hy, rx, ry = HEAD
    hair = HAIR_COLOURS[identity.hair_colour]
    canvas.ellipse(hx, hy, rx + 0.008, ry + 0.008, hair)
    canvas.ellipse(hx, hy + 0.014, rx, ry - 0.004, identity.skin)
    canvas.ellipse(-0.02, hy + 0.005, 0.006, 0.005, (40, 30, 30))
    canvas.ellipse(0.02, hy + 0.005, 0.006, 0.005, (40, 30, 30))
    if identity.hair_length != "short":
        bottom = 0.30 if identity.hair_length == "long" else 0.2
        for side in (-1, 1):
            canvas.rect(side * (rx - 0.004), hy, side * (rx + 0.02), bottom, hair)
    if identity.glasses:
        frame = (20, 20, 20)
        for side in (-1, 1):
            fill = (30, 30, 36) if identity.glasses == "sunglasses" else None
            canvas.ellipse(side * 0.021, hy + 0.006, 0.017, 0.012, fill, outline=frame)
        canvas.line([(-0.006, hy + 0.004), (0.006, hy + 0.004)], frame, 0.005)
    if identity.hat:
        colour = COLOURS[identity.hat_colour or "black"]
        if identity.hat == "cap":
            canvas.ellipse(hx, hy - 0.02, rx + 0.01, ry - 0.02, colour)
            canvas.rect(-0.01, hy - 0.02, rx + 0.045, hy - 0.005, _shade(colour, 0.8))
        elif identity.hat == "hat":
            canvas.rect(-rx - 0.035, hy - 0.03, rx + 0.035, hy - 0.015, colour)
            canvas.rect(-rx + 0.005, hy - ry - 0.025, rx - 0.005, hy - 0.02, colour)
        else:
            canvas.ellipse(hx, hy - 0.025, rx + 0.01, ry - 0.01, colour)
            canvas.rect(-rx - 0.008, hy - 0.03, rx + 0.008, hy - 0.012, _shade(colour, 0.8))


def _bag_behind(canvas: _Canvas, identity: Identity) -> None:
    if identity.bag == "backpack":
        canvas.rect(-0.15, SHOULDER_Y + 0.02, 0.15, 0.43, _shade(COLOURS[identity.bag_colour or "black"], 0.85))


def _bag_front(canvas: _Canvas, identity: Identity, hands: dict[int, tuple[float, float]]) -> None:
    if not identity.bag:
        return
    colour = COLOURS[identity.bag_colour or "black"]
    side = _side(identity.bag_side)
    if identity.bag == "backpack":
        for x in (-0.07, 0.07):
            canvas.line([(x, SHOULDER_Y - 0.005), (x * 1.1, 0.36)], colour, 0.03)
    elif identity.bag == "shoulder bag":
        canvas.line([(-side * 0.09, SHOULDER_Y), (side * 0.12, 0.44)], colour, 0.016)
        canvas.rect(side * 0.08, 0.42, side * 0.2, 0.54, colour)
    else:
        x, y = hands[side]
        canvas.line([(x - 0.02, y + 0.05), (x, y), (x + 0.02, y + 0.05)], colour, 0.01)
        canvas.poly([(x - 0.05, y + 0.04), (x + 0.05, y + 0.04), (x + 0.065, y + 0.14), (x - 0.065, y + 0.14)], colour)


def _lighting(image: Image.Image, jitter: Jitter) -> Image.Image:
    if jitter.blur:
        image = image.filter(ImageFilter.GaussianBlur(jitter.blur))
    pixels = np.asarray(image, dtype=np.float32) * (np.asarray(jitter.cast, dtype=np.float32) * jitter.brightness)
    if jitter.noise:
        noise = np.random.default_rng(jitter.texture_seed).standard_normal(pixels.shape, dtype=np.float32)
        pixels += noise * np.float32(jitter.noise)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def render(identity: Identity, jitter: Jitter, size: tuple[int, int] = DEFAULT_SIZE) -> Image.Image:
    """Draw ``identity`` under ``jitter`` on a ``size`` (width, height) RGB image."""
    canvas = _Canvas(size, jitter)
    _background(canvas, jitter)
    _bag_behind(canvas, identity)
    if identity.hair_length == "long":
        canvas.rect(-0.07, HEAD[1], 0.07, 0.28, HAIR_COLOURS[identity.hair_colour])
    _legs(canvas, identity, jitter)
    canvas.rect(-0.018, 0.12, 0.018, SHOULDER_Y + 0.01, identity.skin)
    _top(canvas, identity)
    hands = _arms(canvas, identity, jitter)
    _head(canvas, identity)
    _bag_front(canvas, identity, hands)
    return _lighting(canvas.image, jitter)
