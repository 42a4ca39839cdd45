"""Listing the clips of CREMA-D (and our synthetic corpus, in its layout) and VoxCeleb2.

CREMA-D: `AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav` and `VideoFlash/<same>.flv`, actors'
age and sex in `VideoDemographics.csv`; the synthetic corpus adds `actors.json` (splits) and
`Stills/<actor>.png`. VoxCeleb2: `<split>/mp4/<idXXXXX>/<video>/<NNNNN>.mp4` (audio inside the
mp4), identities from the folder names, no emotion label; `test` identities are disjoint from `dev`.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..audio import FPS
from ..labels import age_group

DATASETS = ("crema-d", "voxceleb2")
_CREMA = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


@dataclass(frozen=True)
class ClipRef:
    """One raw clip: where its video and audio are, and its labels ('' where unknown)."""

    id: str
    video: str
    audio: str | None  # None: take the audio from the video file
    actor: str
    fps: int
    sentence: str = ""
    emotion: str = ""
    level: str = ""


@dataclass
class DatasetInfo:
    clips: list[ClipRef]
    actors: dict[str, dict] = field(default_factory=dict)  # actor -> {sex, age, age_group, split?}
    stills: dict[str, str] = field(default_factory=dict)  # actor -> image path
    unseen: set[str] = field(default_factory=set)  # actors held out whole


def read_crema_d(root: str | Path) -> DatasetInfo:
    """Clips of a CREMA-D-layout folder (the real one or ours), sorted by id."""
    root = Path(root)
    vdir, adir = root / "VideoFlash", root / "AudioWAV"
    if not vdir.is_dir():
        raise FileNotFoundError(f"{vdir} not found: --root must hold CREMA-D's VideoFlash/ and AudioWAV/")
    clips = []
    for v in sorted(vdir.iterdir()):
        if v.suffix.lower() not in (".flv", ".mp4") or not _CREMA.match(v.stem):
            continue
        actor, sentence, emotion, level = v.stem.split("_")
        wav = adir / f"{v.stem}.wav"
        clips.append(ClipRef(v.stem, str(v), str(wav), actor, FPS["crema-d"], sentence, emotion, level))
    info = DatasetInfo(clips)
    demo = root / "VideoDemographics.csv"
    if demo.exists():
        with open(demo, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    age = int(row.get("Age", "") or 0)
                except ValueError:
                    age = 0
                info.actors[str(row["ActorID"])] = {"sex": row.get("Sex", ""), "age": age,
                                                     "age_group": age_group(age) if age else ""}
    meta = root / "actors.json"
    if meta.exists():
        for a in json.loads(meta.read_text())["actors"]:
            info.actors.setdefault(str(a["id"]), {}).update(split=a["split"])
            if a["split"] == "unseen":
                info.unseen.add(str(a["id"]))
    for p in sorted((root / "Stills").glob("*.png")) if (root / "Stills").is_dir() else []:
        info.stills[p.stem] = str(p)
    return info


def read_voxceleb2(root: str | Path) -> DatasetInfo:
    """Clips of a VoxCeleb2 folder: `<split>/mp4/<id>/<video>/<n>.mp4`; `test` identities are unseen."""
    root = Path(root)
    clips, unseen = [], set()
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        mp4 = split_dir / "mp4"
        if not mp4.is_dir():
            continue
        for f in sorted(mp4.glob("id*/*/*.mp4")):
            ident, video = f.parent.parent.name, f.parent.name
            clips.append(ClipRef(f"{ident}_{video}_{f.stem}", str(f), None, ident, FPS["voxceleb2"]))
            if split_dir.name == "test":
                unseen.add(ident)
    if not clips:
        raise FileNotFoundError(f"no clips under {root}: expected <split>/mp4/<idXXXXX>/<video>/<NNNNN>.mp4")
    return DatasetInfo(clips, {c.actor: {} for c in clips}, {}, unseen)


def read_dataset(name: str, root: str | Path) -> DatasetInfo:
    """The dataset's clips; a root that holds none (a typo, an unfinished download) is an error, not an
    empty preparation that later steps would train on."""
    readers = {"crema-d": read_crema_d, "voxceleb2": read_voxceleb2}
    if name not in readers:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    info = readers[name](root)
    if not info.clips:
        layout = "AudioWAV/*.wav + VideoFlash/*.flv" if name == "crema-d" else "<split>/mp4/<id>/<video>/*.mp4"
        raise FileNotFoundError(f"no {name} clips under {root} (expected {layout})")
    return info
