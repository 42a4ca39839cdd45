"""Command line of the corpus tools: `python -m s2v.corpus {make,faces,prepare,probe,sheet} ...`."""
from __future__ import annotations

import argparse
import json
import sys

from ..labels import EMOTIONS
from .actors import TRAIT_VERSIONS, TRAITS


def _emotions(text: str) -> tuple[str, ...]:
    items = tuple(e.strip().upper() for e in text.split(",") if e.strip())
    bad = [e for e in items if e not in EMOTIONS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown emotion(s) {bad}; choose from {','.join(EMOTIONS)}")
    return items


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m s2v.corpus", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("make", help="make the synthetic corpus in CREMA-D's layout")
    m.add_argument("--out", required=True, help="output folder (resumable: finished clips are kept)")
    m.add_argument("--seen", type=int, default=300, help="actors whose clips are used for training")
    m.add_argument("--unseen", type=int, default=40, help="actors held out whole")
    m.add_argument("--sentences", type=int, default=12, help="how many of CREMA-D's 12 sentences")
    m.add_argument("--emotions", type=_emotions, default=EMOTIONS, help="comma list, default all six")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    m.add_argument("--size", type=int, default=128, help="frame side in pixels")
    m.add_argument("--clips-per-actor", type=int, default=8,
                   help="clips each actor speaks, emotions taking turns (0: every sentence x emotion, 72)")
    m.add_argument("--traits", type=int, default=TRAITS, choices=TRAIT_VERSIONS,
                   help=f"what a voice shares with a face: 3 sex, age, body size and region (accent and the odds of "
                        f"skin, hair and eye colour); 2 sex, age and body size; 1 sex and age only (the corpora made "
                        f"before body size, actor for actor). Default {TRAITS}")
    m.add_argument("--level-spread", type=float, default=0.0,
                   help="dB: each clip's recording level drawn uniformly within +- this (0: every actor recorded at "
                        "one level, so loudness tells emotion as no microphone's level would)")

    f = sub.add_parser("faces", help="a labelled face pool for training the face teachers")
    f.add_argument("--out", required=True)
    f.add_argument("--identities", type=int, default=200)
    f.add_argument("--per-identity", type=int, default=24)
    f.add_argument("--size", type=int, default=64)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--workers", type=int, default=None)
    f.add_argument("--traits", type=int, default=2, choices=(1, 2, 3),
                   help="draw the identities as `make --traits` draws actors (3: colouring by region)")
    f.add_argument("--stills", action="store_true",
                   help="one still per identity (neutral, mouth closed, as the corpus' stills): a face pool for "
                        "stage 2's face decoder (train/stage2.py --face-pool)")

    r = sub.add_parser("prepare", help="raw clips (CREMA-D layout or VoxCeleb2) -> training shards")
    r.add_argument("--dataset", required=True, choices=("crema-d", "voxceleb2"))
    r.add_argument("--root", required=True, help="the dataset folder")
    r.add_argument("--out", required=True, help="output folder of shards (resumable)")
    r.add_argument("--size", type=int, default=64, help="face crop side in pixels")
    r.add_argument("--crop", default="auto", choices=("auto", "detect", "center", "none"),
                   help="auto: center for the synthetic corpus, detect otherwise")
    r.add_argument("--workers", type=int, default=None)
    r.add_argument("--shard", default=None, help="I/N: this process does shards k with k %% N == I; 'auto': from RANK/WORLD_SIZE "
                   "(accelerate launch, torchrun)")
    r.add_argument("--holdout-actors", default="", help="comma list of actor ids held out whole (unseen)")
    r.add_argument("--clips-per-shard", type=int, default=64)
    r.add_argument("--seed", type=int, default=0, help="seed of the 70/15/15 split")

    q = sub.add_parser("probe", help="linear probes: speaker, emotion, sex, age from simple audio features")
    q.add_argument("--corpus", required=True)
    q.add_argument("--judge", default=None,
                   help="an identity network (teachers folder or identity/): also probe how much of the face "
                        "embedding of each actor's still a voice predicts, and its open-set matching")
    q.add_argument("--speaker", default=None,
                   help="a speaker encoder folder (e.g. checkpoints/default/stage1/speaker): probe its embeddings "
                        "(a network trained on real speech) instead of the log-mel statistics")
    q.add_argument("--cpc", default=None,
                   help="a CPC folder (e.g. checkpoints/default/stage1/cpc): probe the mean and SD over time of its "
                        "c_t and z_t (what the students read) instead of the log-mel statistics")

    s = sub.add_parser("sheet", help="contact sheet of a corpus: actors x emotions, and a mouth sequence")
    s.add_argument("--corpus", required=True)
    s.add_argument("--out", required=True, help="PNG path")
    s.add_argument("--actors", type=int, default=8, help="rows (seen and unseen actors)")

    e = sub.add_parser("assets", help="example voices (seen and unseen) and stills for the app")
    e.add_argument("--data", required=True, help="the prepared folder (for the splits)")
    e.add_argument("--corpus", required=True, help="the corpus it was prepared from (for the wav files)")
    e.add_argument("--out", default="assets")
    e.add_argument("--seen", type=int, default=3)
    e.add_argument("--unseen", type=int, default=3)

    args = p.parse_args(argv)
    try:
        if args.cmd == "make":
            from .make import make_corpus

            summary = make_corpus(args.out, args.seen, args.unseen, args.sentences, args.emotions, args.seed,
                                  args.workers, args.size, per_actor=args.clips_per_actor or None,
                                  traits=args.traits, level_spread=args.level_spread)
        elif args.cmd == "prepare":
            from .prepare import prepare

            hold = [a.strip() for a in args.holdout_actors.split(",") if a.strip()]
            summary = prepare(args.dataset, args.root, args.out, args.size, args.crop, args.workers, args.shard,
                              hold, args.clips_per_shard, args.seed)
            summary.pop("skipped_clips", None)
        elif args.cmd == "probe":
            from .probe import probe

            summary = probe(args.corpus, judge=args.judge, speaker=args.speaker, cpc=args.cpc)
        elif args.cmd == "faces":
            from .faces import make_faces

            summary = make_faces(args.out, args.identities, args.per_identity, args.size, args.seed, args.workers,
                                 traits=args.traits, stills=args.stills)
        elif args.cmd == "assets":
            from .assets import make_assets

            summary = make_assets(args.data, args.corpus, args.out, args.seen, args.unseen)
        else:
            from .sheet import contact_sheet

            summary = contact_sheet(args.corpus, args.out, args.actors)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
