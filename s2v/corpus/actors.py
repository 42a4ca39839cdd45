"""Synthetic actors: who they are (sex, age), how they sound, how they look, and how emotion shows.

Sex and age shape the voice (pitch, formants, rate, roughness) and the face (jaw, hair, brows,
grey hair, wrinkles) together, so a voice never heard in training still suggests sex and age; the
rest of each voice and face is drawn independently per actor and has to be learned per actor.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..labels import age_group
from .speech import VoiceVariant

# CREMA-D's twelve sentences, in its order.
SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
LEVELS = {"LO": 0.55, "MD": 0.8, "HI": 1.0, "XX": 0.8}  # emotion intensity per CREMA-D level
ACCENTS = ("en-us", "en-us-nyc", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029")


@dataclass(frozen=True)
class Prosody:
    """Emotion in the voice, relative to the actor's neutral: added pitch, multipliers, extras."""

    pitch: float
    range: float
    rate: float
    volume: float
    wordgap: int = 0
    tremolo: float = 0.0  # amplitude modulation depth (fear)


@dataclass(frozen=True)
class Expression:
    """Emotion on the face, each in about [-1, 1]."""

    brow_raise: float = 0.0  # whole brow up (+) or down (-)
    brow_inner: float = 0.0  # inner ends up (+, sad/fear) or down and together (-, anger)
    eye_open: float = 1.0  # lid opening multiplier
    smile: float = 0.0  # mouth corners up (+) or down (-)
    nose_wrinkle: float = 0.0
    cheek: float = 0.0  # cheek raise
    stretch: float = 0.0  # lips stretched sideways
    lip_raise: float = 0.0  # upper lip raised (disgust)

    def scaled(self, k: float) -> "Expression":
        """This expression at intensity k (0 = neutral)."""
        d = asdict(self)
        d = {n: v * k for n, v in d.items()}
        d["eye_open"] = 1.0 + (self.eye_open - 1.0) * k
        return Expression(**d)


# Vocal effort: a voice raised with effort is not only louder but brighter (the glottal pulse sharpens, so
# the spectrum above 1-2 kHz rises faster than the overall level), and a voice that sinks is darker. eSpeak's
# volume is a pure gain, which a microphone's level undoes, so each clip also gets EFFORT_TILT dB more level
# at 2 kHz and above, relative to below 500 Hz, per dB its emotion's volume lies above neutral (anger at
# full intensity +3.5 dB -> +3.5 dB brighter; sadness -3.7 dB -> darker; `make.effort_shelf`).
EFFORT_TILT = 1.0
PROSODY = {
    "NEU": Prosody(0, 1.0, 1.0, 1.0),
    "HAP": Prosody(14, 1.6, 1.08, 1.15),
    "ANG": Prosody(6, 1.35, 1.12, 1.5, tremolo=0.0),
    "SAD": Prosody(-12, 0.45, 0.78, 0.65, wordgap=3),
    "FEA": Prosody(18, 0.8, 1.2, 0.85, tremolo=0.25),
    "DIS": Prosody(-7, 0.9, 0.85, 1.0, wordgap=2),
}
EXPRESSION = {
    "NEU": Expression(),
    "HAP": Expression(brow_raise=0.15, eye_open=0.8, smile=1.0, cheek=1.0, stretch=0.3),
    "ANG": Expression(brow_raise=-0.7, brow_inner=-1.0, eye_open=0.85, smile=-0.35, lip_raise=0.2),
    "SAD": Expression(brow_raise=-0.1, brow_inner=1.0, eye_open=0.72, smile=-0.8),
    "FEA": Expression(brow_raise=0.9, brow_inner=0.6, eye_open=1.35, smile=-0.25, stretch=0.6),
    "DIS": Expression(brow_raise=-0.45, brow_inner=-0.4, eye_open=0.7, smile=-0.5, nose_wrinkle=1.0,
                      lip_raise=1.0),
}


@dataclass(frozen=True)
class Face:
    """An actor's face. Colours are RGB in [0, 1]; sizes are relative to the default face."""

    skin: tuple[float, float, float]
    face_w: float
    face_h: float
    jaw: float  # 0 narrow/pointed .. 1 wide/square
    hair: tuple[float, float, float]
    grey: float  # share of grey in hair and brows
    hair_style: str  # short, buzz, long, bob, bun, fringe, bald
    hairline: float  # 0 low .. 1 receded
    eye_color: tuple[float, float, float]
    eye_size: float
    eye_spacing: float
    eye_tilt: float
    brow_thick: float
    brow_arch: float
    nose_len: float
    nose_w: float
    lips: tuple[float, float, float]
    lip_full: float
    mouth_w: float
    ear: float
    wrinkles: float
    stubble: float
    shirt: tuple[float, float, float]
    lashes: float  # eyeliner/lash darkness
    gaze: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Voice:
    """An actor's voice: accent, timbre (an eSpeak variant) and neutral prosody."""

    language: str
    variant: VoiceVariant
    pitch: int  # eSpeak pitch 0-100, 50 = the variant's base
    range: int  # eSpeak range 0-100
    rate: int  # words per minute
    volume: int  # eSpeak amplitude, 100 default
    tilt: float  # spectral tilt of the channel, -1 dark .. 1 bright
    eq_hz: float  # centre of a resonance added to the voice (a per-actor colour)
    eq_db: float


@dataclass(frozen=True)
class Actor:
    id: int
    split: str  # seen / unseen / pool
    sex: str  # Male / Female
    age: int
    voice: Voice
    face: Face
    build: float = 0.0  # body size in SDs (traits version 2): a longer vocal tract and a wider head, jaw and nose
    region: int = -1  # where the actor grew up (traits version 3; -1: not drawn): accent and colouring odds

    @property
    def age_group(self) -> str:
        return age_group(self.age)

    def to_json(self) -> dict:
        d = asdict(self)
        d["age_group"] = self.age_group
        return d

    @staticmethod
    def from_json(d: dict) -> "Actor":
        v = dict(d["voice"])
        var = dict(v.pop("variant"))
        var["formant_scale"], var["formant_height"] = tuple(var["formant_scale"]), tuple(var["formant_height"])
        f = {k: tuple(x) if isinstance(x, list) else x for k, x in d["face"].items()}
        return Actor(d["id"], d["split"], d["sex"], d["age"], Voice(variant=VoiceVariant(**var), **v), Face(**f),
                     d.get("build", 0.0), d.get("region", -1))


# Skin tones from light to deep (albedo before shading), hair colours, eye colours.
_SKIN = np.array([[0.96, 0.80, 0.69], [0.90, 0.72, 0.58], [0.80, 0.60, 0.45], [0.66, 0.46, 0.32],
                  [0.50, 0.33, 0.22], [0.36, 0.23, 0.15]])
_HAIR = np.array([[0.08, 0.06, 0.05], [0.22, 0.14, 0.08], [0.40, 0.26, 0.14], [0.62, 0.47, 0.28],
                  [0.85, 0.72, 0.45], [0.55, 0.22, 0.10]])
_EYES = np.array([[0.30, 0.18, 0.08], [0.20, 0.12, 0.06], [0.25, 0.45, 0.70], [0.30, 0.50, 0.35],
                  [0.45, 0.40, 0.25], [0.45, 0.52, 0.58]])
_SHIRTS = np.array([[0.15, 0.25, 0.45], [0.55, 0.12, 0.15], [0.20, 0.40, 0.25], [0.35, 0.35, 0.38],
                    [0.85, 0.85, 0.82], [0.10, 0.10, 0.12], [0.60, 0.45, 0.20], [0.40, 0.25, 0.50]])


def _pick(rng: np.random.Generator, table: np.ndarray, jitter: float = 0.03,
          p: np.ndarray | None = None) -> tuple[float, ...]:
    """A row of `table` (uniformly, or with probabilities `p`) with a little jitter of its own."""
    c = table[rng.integers(len(table)) if p is None else rng.choice(len(table), p=p)] + rng.normal(0, jitter, 3)
    return tuple(float(x) for x in np.clip(c, 0, 1))


TRAITS = 2  # the default version of what a voice shares with a face (actors.json records it)
TRAIT_VERSIONS = (1, 2, 3)


def sample_actor(actor_id: int, split: str, rng: np.random.Generator, sex: str | None = None,
                 age: int | None = None, traits: int = TRAITS) -> Actor:
    """Draw one actor. Sex and age drive both voice and face; with `traits` 2, so does body size (`build`);
    with 3, also where the actor grew up (`region`: its accent and the odds of its colouring). The rest is the
    actor's own. Traits 1 draws exactly the actors of corpora made before build existed, and each version the
    actors of the one before it with its trait added (drawn last)."""
    if traits not in TRAIT_VERSIONS:
        raise ValueError(f"traits must be one of {TRAIT_VERSIONS}, got {traits}")
    sex = sex or ("Male" if rng.random() < 0.5 else "Female")
    age = int(age if age is not None else rng.integers(20, 75))
    male = sex == "Male"
    old = float(np.clip((age - 30) / 40, 0, 1))  # 0 at 30, 1 at 70

    # ---- voice: sex sets pitch and vocal-tract length (formants); age lowers rate, adds roughness
    base_hz = rng.uniform(85, 125) if male else rng.uniform(165, 230)
    base_hz *= 1.0 - (0.08 * old if not male else -0.04 * old)  # women's voices drop, men's rise a little
    tract = rng.uniform(0.94, 1.02) if male else rng.uniform(1.08, 1.2)
    scale = tuple(float(100 * tract * rng.uniform(0.96, 1.04)) for _ in range(6))
    height = tuple(float(rng.uniform(70, 115)) for _ in range(6))
    variant = VoiceVariant(
        gender="male" if male else "female",
        pitch_base_hz=round(float(base_hz), 1),
        pitch_range_hz=round(float(base_hz * rng.uniform(0.35, 0.7) * (1 - 0.3 * old)), 1),
        formant_scale=tuple(round(s, 1) for s in scale),
        formant_height=tuple(round(h, 1) for h in height),
        flutter=int(rng.integers(2, 8) + 14 * old),
        roughness=int(rng.integers(0, 5) + 3 * old),
        breath=int(rng.integers(0, 3) if male else rng.integers(0, 5)),
    )
    voice = Voice(
        language=str(ACCENTS[rng.integers(len(ACCENTS))]),
        variant=variant,
        pitch=int(rng.integers(40, 61)),
        range=int(rng.integers(35, 66)),
        rate=int(rng.uniform(165, 205) - 35 * old),
        volume=int(rng.integers(85, 116)),
        tilt=float(rng.uniform(-1, 1)),
        eq_hz=float(np.exp(rng.uniform(np.log(600), np.log(3500)))),
        eq_db=float(rng.uniform(-6, 6)),
    )

    # ---- face: sex sets jaw, hair style, brows, stubble; age sets grey hair, wrinkles, hairline
    styles = ["short", "short", "buzz", "fringe", "bald"] if male else ["long", "long", "bob", "bun", "fringe"]
    style = styles[rng.integers(len(styles))]
    if style == "bald" and old < 0.4:
        style = "buzz"
    face = Face(
        skin=_pick(rng, _SKIN, 0.025),
        face_w=float(rng.uniform(0.92, 1.05) + (0.04 if male else -0.03)),
        face_h=float(rng.uniform(1.22, 1.38)),
        jaw=float(np.clip(rng.uniform(0.45, 1.0) if male else rng.uniform(0.0, 0.5), 0, 1)),
        hair=_pick(rng, _HAIR, 0.03),
        grey=float(np.clip(old * rng.uniform(0.6, 1.2) - 0.1, 0, 0.95)),
        hair_style=style,
        hairline=float(np.clip((rng.uniform(0, 0.5) + 0.6 * old) if male else rng.uniform(0, 0.25), 0, 1)),
        eye_color=_pick(rng, _EYES, 0.03),
        eye_size=float(rng.uniform(0.88, 1.12)),
        eye_spacing=float(rng.uniform(0.36, 0.44)),
        eye_tilt=float(rng.uniform(-0.06, 0.08)),
        brow_thick=float(rng.uniform(1.3, 2.0) if male else rng.uniform(0.8, 1.25)),
        brow_arch=float(rng.uniform(0.1, 0.5) if male else rng.uniform(0.4, 0.9)),
        nose_len=float(rng.uniform(0.9, 1.15) + (0.05 if male else 0)),
        nose_w=float(rng.uniform(0.85, 1.2) + (0.08 if male else 0)),
        lips=_pick(rng, np.array([[0.72, 0.38, 0.38], [0.62, 0.32, 0.33], [0.78, 0.45, 0.45]])
                   if male else np.array([[0.80, 0.30, 0.35], [0.70, 0.25, 0.30], [0.85, 0.42, 0.45]]), 0.03),
        lip_full=float(rng.uniform(0.75, 1.05) if male else rng.uniform(0.95, 1.3)),
        mouth_w=float(rng.uniform(0.88, 1.1)),
        ear=float(rng.uniform(0.85, 1.15)),
        wrinkles=float(np.clip(old * rng.uniform(0.7, 1.3), 0, 1)),
        stubble=float(rng.uniform(0, 0.9) if male and rng.random() < 0.5 else 0.0),
        shirt=_pick(rng, _SHIRTS, 0.05),
        lashes=float(rng.uniform(0.2, 0.5) if male else rng.uniform(0.6, 1.0)),
        gaze=(float(rng.uniform(-0.15, 0.15)), float(rng.uniform(-0.1, 0.1))),
    )
    actor = Actor(actor_id, split, sex, age, voice, face)
    if traits >= 2:  # drawn after everything else: the actors of earlier versions unchanged
        actor = with_build(actor, float(rng.normal()))
    if traits >= 3:
        actor = with_region(actor, int(rng.integers(len(REGIONS))), rng)
    return actor


def with_build(actor: Actor, build: float) -> Actor:
    """The actor with body size `build` (SDs within its sex). As in people, a bigger build comes with a longer
    vocal tract (formants about 2.5 % lower per SD, against a ±4 % spread of their own), a slightly lower
    voice (3 % per SD) and a wider face, squarer jaw and wider nose; each only shifts a trait that keeps
    its own independent spread, so a voice hints at the face's size but does not give it away."""
    from dataclasses import replace

    v, f = actor.voice, actor.face
    k = 1.0 - 0.025 * build
    variant = replace(v.variant, formant_scale=tuple(round(x * k, 1) for x in v.variant.formant_scale),
                      pitch_base_hz=round(v.variant.pitch_base_hz * (1.0 - 0.03 * build), 1))
    face = replace(f, face_w=float(f.face_w + 0.025 * build), face_h=float(f.face_h + 0.02 * build),
                   jaw=float(np.clip(f.jaw + 0.08 * build, 0, 1)), nose_w=float(f.nose_w + 0.03 * build))
    return replace(actor, voice=replace(v, variant=variant), face=face, build=round(build, 3))


# Where an actor grew up (traits version 3). In real populations ancestry and the place one grew up go
# together, so an accent shifts the odds of skin tone, hair and eye colour, and only the odds: people of
# every colouring speak every accent. Here each region has one accent, spoken by 80 % of the actors who grew
# up there (the rest speak any of the eight), and a most likely skin tone, hair colour and eye colour
# (about half its actors have it, most of the rest a neighbouring one). Which region has which odds was
# drawn at random once (REGION_SEED): the link is realistic in kind, not a claim about any real accent.
REGION_SEED = 20261123
ACCENT_LOYALTY = 0.9
REGION_SPREAD = 0.7  # SD, in steps of the colour tables, of a region's colouring around its most likely one


def _regions() -> tuple[dict, ...]:
    rng = np.random.default_rng(REGION_SEED)
    skin, hair, eyes = (rng.permutation(n) for n in (len(_SKIN), len(_HAIR), len(_EYES)))
    return tuple({"accent": ACCENTS[k], "skin": int(skin[k % len(skin)]), "hair": int(hair[k % len(hair)]),
                  "eyes": int(eyes[k % len(eyes)])} for k in range(len(ACCENTS)))


REGIONS = _regions()


def _odds(centre: int, n: int) -> np.ndarray:
    p = np.exp(-0.5 * ((np.arange(n) - centre) / REGION_SPREAD) ** 2)
    return p / p.sum()


def with_region(actor: Actor, region: int, rng: np.random.Generator) -> Actor:
    """The actor as grown up in `REGIONS[region]`: its accent (the region's with probability ACCENT_LOYALTY,
    else any), and its skin tone, hair colour and eye colour drawn with the region's odds (the within-table
    jitter as `sample_actor` draws it). Grey hair, style and everything else stay the actor's own."""
    from dataclasses import replace

    r = REGIONS[region]
    accent = r["accent"] if rng.random() < ACCENT_LOYALTY else ACCENTS[rng.integers(len(ACCENTS))]
    face = replace(actor.face, skin=_pick(rng, _SKIN, 0.025, _odds(r["skin"], len(_SKIN))),
                   hair=_pick(rng, _HAIR, 0.03, _odds(r["hair"], len(_HAIR))),
                   eye_color=_pick(rng, _EYES, 0.03, _odds(r["eyes"], len(_EYES))))
    return replace(actor, voice=replace(actor.voice, language=str(accent)), face=face, region=region)


def make_actors(seen: int, unseen: int, seed: int, traits: int = TRAITS) -> list[Actor]:
    """Actors 1001.. for a corpus: sexes alternate and ages spread so both splits cover both."""
    rng = np.random.default_rng([seed, 7001])
    actors = []
    n = seen + unseen
    ages = rng.permutation(np.linspace(20, 74, n).round().astype(int))
    for i in range(n):
        split = "seen" if i < seen else "unseen"
        sex = "Male" if (i % 2 == 0) else "Female"
        actors.append(sample_actor(1001 + i, split, np.random.default_rng([seed, 1001 + i]), sex, int(ages[i]),
                                   traits))
    return actors
