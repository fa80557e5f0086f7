"""What a synthetic pedestrian looks like: an identity's attributes and each image's jitter.

An :class:`Identity` fixes everything a caption may mention (clothes, colours, hair, bag, hat,
glasses). A :class:`Jitter` varies what a caption never mentions (pose, scale, position,
background, lighting), so that images of one person differ while the person stays recognisable
from the pixels alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

# colour name (as a caption writes it) -> drawn RGB
COLOURS: dict[str, RGB] = {
    "black": (24, 24, 26),
    "white": (238, 238, 234),
    "grey": (128, 128, 128),
    "light grey": (192, 192, 190),
    "dark grey": (68, 68, 70),
    "red": (204, 32, 36),
    "dark red": (118, 18, 28),
    "pink": (240, 146, 182),
    "orange": (242, 128, 28),
    "yellow": (238, 214, 40),
    "green": (42, 150, 62),
    "dark green": (22, 78, 40),
    "light green": (146, 212, 120),
    "blue": (40, 82, 204),
    "dark blue": (20, 34, 98),
    "light blue": (140, 190, 236),
    "purple": (122, 50, 162),
    "brown": (112, 70, 38),
    "beige": (214, 192, 150),
}
HAIR_COLOURS: dict[str, RGB] = {
    "black": (20, 18, 18),
    "dark brown": (58, 36, 22),
    "brown": (110, 70, 36),
    "blonde": (222, 190, 110),
    "grey": (160, 160, 160),
    "red": (160, 64, 30),
}
SKIN_TONES: tuple[RGB, ...] = ((245, 210, 180), (226, 184, 150), (198, 150, 110), (150, 104, 70), (98, 66, 44))

TOPS = {
    "male": ("t-shirt", "shirt", "jacket", "coat", "sweater", "hoodie"),
    "female": ("t-shirt", "shirt", "jacket", "coat", "sweater", "hoodie", "dress", "blouse"),
}
PATTERNS = ("plain", "plain", "striped", "checked", "logo")
BOTTOMS = {"male": ("pants", "jeans", "shorts"), "female": ("pants", "jeans", "shorts", "skirt")}
JEANS_COLOURS = ("blue", "dark blue", "light blue", "black", "grey")
SHOES = ("shoes", "sneakers", "boots", "sandals")
SHOE_COLOURS = ("black", "white", "brown", "grey", "red", "blue", "beige", "pink")
BAGS = (None, "backpack", "handbag", "shoulder bag")
HATS = (None, None, None, "cap", "hat", "beanie")
GLASSES = (None, None, None, "glasses", "sunglasses")
HAIR_LENGTHS = {"male": ("short", "short", "short", "shoulder-length"), "female": ("long", "long", "shoulder-length", "short")}


@dataclass(frozen=True)
class Identity:
    """Everything drawn and captioned about one person. Colours are keys of COLOURS."""

    gender: str  # "male" | "female"
    skin: RGB
    hair_colour: str  # key of HAIR_COLOURS
    hair_length: str  # short | shoulder-length | long
    top: str
    top_colours: tuple[str, ...]  # (main,) or (main, pattern colour)
    sleeves: str  # short | long | none
    pattern: str  # plain | striped | checked | logo
    bottom: str | None  # None under a dress
    bottom_colour: str | None
    shoes: str
    shoe_colours: tuple[str, ...]
    bag: str | None
    bag_colour: str | None
    bag_side: str  # the person's own side: left | right
    hat: str | None
    hat_colour: str | None
    glasses: str | None

    def signature(self) -> tuple[object, ...]:
        """The visible attributes compared when keeping identities apart."""
        return (
            self.top, self.top_colours[0], self.pattern, self.bottom, self.bottom_colour,
            self.shoe_colours[0], self.bag, self.bag_colour, self.hair_colour, self.hair_length,
            self.hat, self.glasses,
        )


@dataclass(frozen=True)
class Jitter:
    """Per-image variation that no caption mentions."""

    scale: float  # figure height / image height
    dx: float  # horizontal offset, fraction of image width
    dy: float  # share of the vertical slack above the figure (0..1)
    leg_spread: float  # 0 feet together .. 1 mid-stride
    arm_swing: tuple[float, float]  # degrees outward from vertical, (person's right, left)
    background: RGB
    ground: RGB
    texture: str  # plain | tiles | wall | clutter
    texture_seed: int
    brightness: float
    cast: tuple[float, float, float]
    noise: float  # std of Gaussian pixel noise
    blur: float  # Gaussian blur radius (0 = none)


def _choice(rng: random.Random, options):
    return options[rng.randrange(len(options))]


def _other_colour(rng: random.Random, *avoid: str | None) -> str:
    names = [name for name in COLOURS if name not in avoid]
    return _choice(rng, names)


def sample_identity(rng: random.Random) -> Identity:
    """Draw one identity's attributes from ``rng``."""
    gender = _choice(rng, ("male", "female"))
    top = _choice(rng, TOPS[gender])
    pattern = "plain" if top in ("coat", "jacket") and rng.random() < 0.6 else _choice(rng, PATTERNS)
    main = _other_colour(rng)
    top_colours = (main,) if pattern == "plain" else (main, _other_colour(rng, main))
    if top in ("jacket", "coat", "sweater", "hoodie"):
        sleeves = "long"
    elif top == "t-shirt":
        sleeves = "short"
    elif top == "dress":
        sleeves = _choice(rng, ("short", "none"))
    else:
        sleeves = _choice(rng, ("short", "long"))
    bottom = None if top == "dress" else _choice(rng, BOTTOMS[gender])
    if bottom is None:
        bottom_colour = None
    elif bottom == "jeans":
        bottom_colour = _choice(rng, JEANS_COLOURS)
    else:
        bottom_colour = _other_colour(rng, main)
    shoe_main = _choice(rng, SHOE_COLOURS)
    shoe_colours = (shoe_main,) if rng.random() < 0.8 else (shoe_main, _other_colour(rng, shoe_main))
    bag = _choice(rng, BAGS)
    hat = _choice(rng, HATS)
    return Identity(
        gender=gender,
        skin=_choice(rng, SKIN_TONES),
        hair_colour=_choice(rng, tuple(HAIR_COLOURS)),
        hair_length=_choice(rng, HAIR_LENGTHS[gender]),
        top=top,
        top_colours=top_colours,
        sleeves=sleeves,
        pattern=pattern,
        bottom=bottom,
        bottom_colour=bottom_colour,
        shoes=_choice(rng, SHOES),
        shoe_colours=shoe_colours,
        bag=bag,
        bag_colour=_other_colour(rng) if bag else None,
        bag_side=_choice(rng, ("left", "right")),
        hat=hat,
        hat_colour=_other_colour(rng) if hat else None,
        glasses=_choice(rng, GLASSES),
    )


def sample_identities(count: int, rng: random.Random, min_differences: int = 4, tries: int = 50) -> list[Identity]:
    """``count`` identities, each differing from every earlier one in ``min_differences`` visible attributes.

    A candidate too close to an earlier identity is redrawn up to ``tries`` times; the last draw is
    kept when none is far enough (only happens when ``count`` approaches the attribute space).
    """
    codes: dict[object, int] = {}
    rows = np.zeros((count, len(sample_identity(random.Random(0)).signature())), dtype=np.int32)
    identities: list[Identity] = []
    for index in range(count):
        for _ in range(tries):
            candidate = sample_identity(rng)
            row = [codes.setdefault((column, value), len(codes)) for column, value in enumerate(candidate.signature())]
            if index == 0 or int((rows[:index] != row).sum(axis=1).min()) >= min_differences:
                break
        rows[index] = row
        identities.append(candidate)
    return identities


def sample_jitter(rng: random.Random) -> Jitter:
    """Draw one image's pose, framing, background and lighting from ``rng``."""
    base = tuple(rng.randint(70, 200) for _ in range(3))
    grey = sum(base) / 3
    background = tuple(int(0.55 * c + 0.45 * grey) for c in base)  # muted, never a clothing-like hue
    ground = tuple(max(0, int(c * rng.uniform(0.6, 0.85))) for c in background)
    return Jitter(
        scale=rng.uniform(0.80, 0.94),
        dx=rng.uniform(-0.1, 0.1),
        dy=rng.uniform(0.2, 0.8),
        leg_spread=rng.random(),
        arm_swing=(rng.uniform(4, 22), rng.uniform(4, 22)),
        background=background,  # type: ignore[arg-type]
        ground=ground,  # type: ignore[arg-type]
        texture=_choice(rng, ("plain", "tiles", "wall", "clutter")),
        texture_seed=rng.randrange(2**31),
        brightness=rng.uniform(0.78, 1.18),
        cast=(rng.uniform(0.92, 1.08), rng.uniform(0.92, 1.08), rng.uniform(0.92, 1.08)),
        noise=rng.uniform(0.0, 7.0),
        blur=_choice(rng, (0.0, 0.0, 0.0, 0.5, 0.8)),
    )
