"""Stage 1: distil the identity (ν) and emotion (μ) students from the face teachers (eq. 1-3).

    accelerate launch train/stage1.py --data data/prep64 --cpc runs/cpc --teachers runs/teachers \
        --output-dir runs/stage1

The teacher targets (ν* of the first frame, μ* averaged over K frames) come from PREP/targets.npz
(made here from --teachers if missing). With the CPC frozen (default), ω = c_T of every clip is
computed once and the students train on it; --finetune-cpc runs the CPC in the loop instead.
The output holds cpc/, students/, the gallery of seen actors (id, still, sex, age group, mean ν*)
and metrics.json: on the seen actors' test clips, identity top-1 (the actor whose mean ν* is
nearest the voice's ν) and emotion accuracy (argmax μ vs the label); on unseen actors, how often
the nearest seen actor has the same sex and the same age group, and the open-set reach of ν itself
(`nu_match_1to2_unseen`, `nu_r_at_1_unseen`, `nu_r_at_5_unseen`: each clip's ν among the unseen actors'
mean ν*, by cosine in T_id's space, `s2v.openset`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s2v.audio import SAMPLE_RATE  # noqa: E402
from s2v.labels import EMOTIONS  # noqa: E402
from s2v.cpc import CPC  # noqa: E402
from s2v.data import Prepared  # noqa: E402
from s2v.gallery import Gallery  # noqa: E402
from s2v.students import (EMO_INPUTS, ID_HEADS, POOLS, Students, StudentsConfig, cpc_lengths, fit_linear_id,  # noqa: E402
                          stage1_loss)
from s2v.targets import ensure_targets  # noqa: E402
from s2v.training import Run, add_common_args, infinite  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, max_steps=3000, batch_size=64, lr=1e-3, checkpointing_steps=1000)
    p.add_argument("--cpc", required=True, help="a CPC folder (train/cpc.py output)")
    p.add_argument("--teachers", required=True, help="the teachers folder (train/teachers.py output)")
    p.add_argument("--pool", default="last", choices=POOLS,
                   help="ω = c_T (paper), the mean of c_t over t, or its mean and standard deviation (beyond the "
                        "paper)")
    p.add_argument("--distill", default="as-written", choices=("as-written", "teacher-weighted"),
                   help="eq. 3 as the paper writes it, or with the arguments swapped (soft-target cross-entropy)")
    p.add_argument("--id-target", default="softmax", choices=("softmax", "embedding"),
                   help="what S_id distils: eq. 3's softmax of ν* (paper), or the direction of ν* itself (cosine; "
                        "beyond the paper: every unit of the face embedding counts)")
    p.add_argument("--id-head", default="mlp", choices=ID_HEADS,
                   help="S_id: the MLP trained by eq. 3 (paper), or, beyond the paper, one linear map of ω fitted in "
                        "closed form (ridge regression of ν*, the penalty chosen on seen actors held out whole); "
                        "--id-target then does not apply")
    p.add_argument("--accent", default=None,
                   help="beyond the paper: an accent head (python -m s2v.accent, trained on a voice pool through this "
                        "--cpc) whose posteriors ω also holds, frozen; for the many-identity corpus (traits 3), "
                        "where an accent shifts the odds of a face's colouring")
    p.add_argument("--emo-level", action="store_true",
                   help="beyond the paper: S_emo also reads the input's loudness (the CPC normalises it away)")
    p.add_argument("--emo-input", default="omega", choices=EMO_INPUTS,
                   help="beyond the paper: what S_emo reads, ω (as S_id) or the mean and std of c_t over the voiced "
                        "frames plus loudness statistics; prosody-rel: statistics that a gain or trimmed silence does "
                        "not change; prosody-pitch: those and the voice's pitch statistics (s2v.pitch)")
    p.add_argument("--emo-speakers", action="store_true",
                   help="beyond the paper: S_emo also reads its input minus the speaker's average (the true actor's "
                        "in training, the seen actors nearest the voice's ν at inference)")
    p.add_argument("--finetune-cpc", action="store_true", help="train the CPC with the students")
    p.add_argument("--cpc-learning-rate", type=float, default=5e-5)
    p.add_argument("--max-seconds", type=float, default=6.0, help="audio per clip fed to the CPC")
    p.add_argument("--k", type=int, default=8, help="frames averaged for μ* when targets are made here")
    p.add_argument("--augment", type=float, default=0.0,
                   help="beyond the paper: train also on --augment-copies degraded copies of every training clip "
                        "(s2v.degrade.augment: with this probability one recording condition, and always a gain "
                        "within ±10 dB), so the students stop reading the recording and the level; 0: clean only")
    p.add_argument("--augment-copies", type=int, default=2, help="degraded copies of each clip (with --augment)")
    return p.parse_args(argv)


class Clips(torch.utils.data.Dataset):
    """Clip audio (cut to max_seconds) with the clip's teacher targets."""

    def __init__(self, data: Prepared, ids: list[int], targets: dict, max_samples: int):
        self.data, self.ids, self.t, self.max = data, ids, targets, max_samples

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int):
        i = self.ids[k]
        a = self.data.audio(i)[: self.max]
        return torch.from_numpy(a), torch.from_numpy(self.t["nu_star"][i]), torch.from_numpy(self.t["mu_star"][i]), i


def collate(items):
    """Zero-pad audio to the longest; each clip's length in samples (c_T is read at its own end)."""
    wavs, nu, mu, idx = zip(*items)
    n = max(w.numel() for w in wavs)
    batch = torch.zeros(len(wavs), n)
    for j, w in enumerate(wavs):
        batch[j, : w.numel()] = w
    n_samples = torch.tensor([w.numel() for w in wavs])
    return batch, n_samples, torch.stack(nu), torch.stack(mu), torch.tensor(idx)


@torch.no_grad()
def encode_all(cpc: CPC, students: Students, data: Prepared, ids: list[int], max_samples: int, device,
               batch: int = 16, transform=None):
    """(len(ids), T_max, H) is too big to keep: return per-clip ω (c_T or mean c, as the students pool) and
    S_emo's input (`Students.emotion_input`) instead. `transform(audio) -> audio` is applied to each clip first."""
    omega, emo = [], []
    tf = transform or (lambda a: a)
    for s in range(0, len(ids), batch):
        wav, n_samples, *_ = collate([(torch.from_numpy(tf(data.audio(i)[:max_samples])), torch.zeros(1),
                                       torch.zeros(1), i) for i in ids[s:s + batch]])
        wav = wav.to(device)
        c, _ = cpc(wav, n_samples)  # each clip normalised over its own samples, as the pipeline reads it
        omega.append(students.omega(c, cpc_lengths(n_samples.to(device), c.shape[1])).float().cpu())
        emo.append(students.emotion_input(c, wav, n_samples).float().cpu())
    return torch.cat(omega), torch.cat(emo)


@torch.no_grad()
def predict(cpc: CPC, students: Students, data: Prepared, ids: list[int], max_samples: int, device):
    cpc.eval(), students.eval()
    return predict_encoded(students, *encode_all(cpc, students, data, ids, max_samples, device), device)


@torch.no_grad()
def predict_encoded(students: Students, omega, emo, device):
    """(ν, μ) as numpy from `encode_all`'s output."""
    students.eval()
    nu, mu = students(omega.to(device), e=emo.to(device))
    return nu.cpu().numpy(), mu.cpu().numpy()


def speaker_bases(gallery: Gallery, data: Prepared, ids: list[int], emo: torch.Tensor) -> torch.Tensor:
    """(A, D) each gallery actor's mean S_emo input over its clips among `ids` (rows of `emo`)."""
    actors = np.array([data.clips[i]["actor"] for i in ids])
    return torch.stack([emo[torch.from_numpy(actors == a)].mean(0) for a in gallery.ids])


def report(cpc, students, data: Prepared, gallery: Gallery, max_samples: int, device,
           targets: dict | None = None) -> dict:
    """The metrics of the module doc; with `targets`, also the open-set reach of ν itself on unseen actors
    (`s2v.openset` scores of each clip's ν among the unseen actors' mean ν*, in T_id's space): what the
    generator can at best carry to the face, before any face is drawn."""
    out = {}
    test = data.split("test")
    if test:
        nu, mu = predict(cpc, students, data, test, max_samples, device)
        actors = np.array([data.clips[i]["actor"] for i in test])
        emo = np.array([EMOTIONS.index(data.clips[i]["emotion"]) if data.clips[i]["emotion"] in EMOTIONS else -1
                        for i in test])
        nearest = gallery.nearest(nu)
        out["identity_top1_seen_test"] = round(float(np.mean(nearest == actors)), 4)
        if (emo >= 0).any():
            out["emotion_accuracy_seen_test"] = round(float(np.mean(mu.argmax(1)[emo >= 0] == emo[emo >= 0])), 4)
        out["seen_test_clips"] = len(test)
    unseen = data.split("unseen")
    if unseen:
        nu, _ = predict(cpc, students, data, unseen, max_samples, device)
        nearest = gallery.nearest(nu)
        for key in ("sex", "age_group"):
            truth = np.array([data.index["actors"][data.clips[i]["actor"]].get(key, "") for i in unseen])
            guess = np.array([gallery.actors[a][key] for a in nearest])
            if all(truth):
                out[f"unseen_{key}_agreement"] = round(float(np.mean(truth == guess)), 4)
        out["unseen_clips"] = len(unseen)
        actors = np.array([data.clips[i]["actor"] for i in unseen])
        names = sorted(set(actors), key=str)
        if targets is not None and len(names) >= 2:
            from s2v.openset import match_scores

            stills = np.stack([targets["nu_star"][np.array(unseen)[actors == n]].mean(0) for n in names])
            scores = match_scores(nu, np.array([names.index(a) for a in actors]), stills)
            out.update({f"nu_{k}_unseen": round(float(scores[k]), 4) for k in ("match_1to2", "r_at_1", "r_at_5")})
            out["unseen_actors"] = len(names)
    return out


def main(args) -> dict:
    run = Run(args, "stage1")
    acc = run.accelerator
    data = Prepared(args.data)
    targets = ensure_targets(args.data, args.teachers, acc, k=args.k)
    max_samples = int(args.max_seconds * SAMPLE_RATE)
    cpc = CPC.from_pretrained(args.cpc)
    gallery = Gallery.build(data, targets)
    accent = None
    if args.accent:
        from s2v.accent import AccentHead

        accent = AccentHead.from_pretrained(args.accent)
        if accent.config.in_dim != cpc.dim:
            raise SystemExit(f"--accent reads c_t of size {accent.config.in_dim}, this --cpc gives {cpc.dim}")
    students = Students(StudentsConfig(in_dim=cpc.dim, id_dim=targets["nu_star"].shape[1],
                                       emo_dim=targets["mu_star"].shape[1], pool=args.pool,
                                       emo_level=args.emo_level, emo_input=args.emo_input,
                                       emo_speakers=len(gallery.ids) if args.emo_speakers else 0,
                                       id_head=args.id_head,
                                       **({"accents": accent.config.accents, "accent_hidden": accent.config.hidden,
                                           "accent_traits": accent.config.traits} if accent else {})))
    if accent is not None:
        students.accent.load_state_dict(accent.state_dict())
    for flag, name in ((args.id_head == "linear", "--id-head linear is fitted"), (accent, "--accent reads")):
        if flag and args.finetune_cpc:
            raise SystemExit(f"{name} on fixed c_t: it does not go with --finetune-cpc")
    train_ids = data.split("train")
    # the true actor of each training clip, as weights over the gallery (whose average S_emo input is taken off)
    speaker = torch.zeros(len(data.clips), len(gallery.ids))
    for i in train_ids:
        speaker[i, gallery.ids.index(data.clips[i]["actor"])] = 1.0
    groups = [{"params": [q for q in students.parameters() if q.requires_grad], "lr": args.learning_rate}]
    if args.finetune_cpc:
        groups.append({"params": cpc.parameters(), "lr": args.cpc_learning_rate})
    else:
        cpc.eval().requires_grad_(False)
    opt = torch.optim.AdamW(groups, weight_decay=1e-4)
    head = {}  # with --id-head linear: the closed-form fit's penalty and its held-out matching
    encoded = encode_all(cpc.to(acc.device), students, data, train_ids, max_samples, acc.device)
    if args.emo_speakers:  # each actor's average S_emo input (with --finetune-cpc: of the CPC as it starts)
        students.set_speakers(bases=speaker_bases(gallery, data, train_ids, encoded[1]))
    if args.finetune_cpc:  # audio in the loop
        loader = torch.utils.data.DataLoader(Clips(data, train_ids, targets, max_samples), batch_size=args.batch_size,
                                             shuffle=True, drop_last=True, collate_fn=collate,
                                             num_workers=args.num_workers)
    else:  # ω of every clip once; the students train on those vectors (and the gallery's voices come from them)
        rows, feats = list(train_ids), [list(encoded)]
        if args.augment > 0:  # degraded copies of every clip, encoded once each, with the clean clip's targets
            from tqdm.auto import tqdm

            from s2v.degrade import augment

            rng = np.random.default_rng(args.seed)
            for _ in tqdm(range(args.augment_copies), desc="degraded copies", disable=not run.is_main):
                feats.append(list(encode_all(cpc, students, data, train_ids, max_samples, acc.device,
                                             transform=lambda a: augment(a, rng, args.augment))))
                rows += list(train_ids)
        if args.id_head == "linear":  # S_id in closed form, once, before the loop (which then trains S_emo only)
            head = fit_linear_id(students, torch.cat([f[0] for f in feats]).numpy(), targets["nu_star"][rows],
                                 [data.clips[i]["actor"] for i in rows])
            students.s_id.requires_grad_(False)
            acc.print(f"S_id fitted in closed form: {head}")
        ds = torch.utils.data.TensorDataset(*(torch.cat([f[j] for f in feats]) for j in range(2)),
                                            torch.from_numpy(targets["nu_star"][rows]),
                                            torch.from_numpy(targets["mu_star"][rows]), speaker[rows])
        loader = torch.utils.data.DataLoader(ds, batch_size=min(args.batch_size, len(ds)), shuffle=True,
                                             drop_last=True)
    students, cpc, opt, loader = acc.prepare(students, cpc, opt, loader)
    step = run.resume()
    from tqdm.auto import tqdm

    bar = tqdm(total=args.max_steps, initial=step, desc="stage 1", disable=not run.is_main)
    batches = infinite(loader)
    terms = None  # the last step's losses (none when a finished run is resumed)
    while step < args.max_steps:
        if args.finetune_cpc:
            wav, n_samples, nu_star, mu_star, idx = next(batches)
            who = speaker[idx].to(wav.device) if args.emo_speakers else None
            with acc.autocast():
                c, _ = cpc(wav, n_samples)
                e = acc.unwrap_model(students).emotion_input(c, wav, n_samples)
                nu, mu = students(c, cpc_lengths(n_samples, c.shape[1]), e=e, speaker=who)
        else:
            w, e, nu_star, mu_star, who = next(batches)
            with acc.autocast():
                nu, mu = students(w, e=e, speaker=who if args.emo_speakers else None)
        terms = stage1_loss(mu.float(), mu_star, nu.float(), nu_star, distill=args.distill, id_target=args.id_target)
        opt.zero_grad(set_to_none=True)
        acc.backward(terms["total"])
        opt.step()
        step += 1
        bar.update()
        if step % args.logging_steps == 0:
            bar.set_postfix(loss=f"{terms['total'].item():.4f}")
            run.log({f"loss/{k}": v.item() for k, v in terms.items()}, step)
        run.maybe_checkpoint(step)
    bar.close()

    u_cpc, u_students = acc.unwrap_model(cpc), acc.unwrap_model(students)
    if args.finetune_cpc:  # the CPC changed: encode again
        nu_train, _ = predict(u_cpc, u_students, data, train_ids, max_samples, acc.device)
    else:
        nu_train, _ = predict_encoded(u_students, *encoded, acc.device)
    gallery.with_voice(data, nu_train, train_ids)  # where identity recall maps a voice (the pipeline's default)
    if args.emo_speakers:  # at inference S_emo finds the speaker by ν among the same voices
        u_students.set_speakers(keys=torch.from_numpy(gallery.voice))
    metrics = {**report(u_cpc, u_students, data, gallery, max_samples, acc.device, targets),
               **head, "steps": step,
               "final_loss": round(float(terms["total"].item()), 5) if terms else None}
    acc.print(json.dumps(metrics))
    run.log({f"eval/{k}": v for k, v in metrics.items()}, step)

    def save(out: Path) -> None:
        u_cpc.save_pretrained(out / "cpc", card=f"# s2v CPC (stage 1)\n\nFrom {args.cpc}"
                              f"{', fine-tuned in stage 1' if args.finetune_cpc else ''}.\n")
        u_students.save_pretrained(out / "students", card="# s2v stage-1 students\n\nS_id and S_emo (eq. 2-3).\n")
        gallery.save(out / "gallery")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        settings = {k: v for k, v in vars(args).items()}
        (out / "stage1.json").write_text(json.dumps({"cpc": str(args.cpc), "teachers": str(args.teachers),
                                                     "data": str(args.data), "settings": settings}, indent=1))
        (out / "README.md").write_text(
            "# s2v stage 1\n\nCPC audio encoder + identity/emotion students distilled from the face teachers "
            f"(paper eq. 1-3, λ = 0.025), trained on `{args.data}`.\n\n## Metrics\n\n```\n"
            f"{json.dumps(metrics, indent=1)}\n```\n\n## Limitations\n\nTrained on the synthetic corpus: the "
            "gallery holds its seen actors only; an unseen voice maps to the nearest seen face.\n")

    run.finish(step, save)
    return metrics


if __name__ == "__main__":
    main(parse_args())
