"""Train the face teachers on the labelled face pool (`python -m s2v.corpus faces`).

    accelerate launch train/teachers.py --data data/faces --output-dir runs/teachers

T_id learns identity classification (its fc7 is the identity embedding), T_emo learns the six
emotions. Identities listed last in the pool (--holdout-identities) are never trained on: the
report measures, on them, verification accuracy of T_id embeddings on same/different pairs (the
threshold chosen on training identities) and T_emo's emotion accuracy. The output folder holds
identity/ and emotion/ (config.json + model.safetensors + README.md each), metrics.json and a card.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s2v.labels import EMOTIONS  # noqa: E402
from s2v.teachers import EmotionConfig, EmotionTeacher, IdentityConfig, IdentityTeacher  # noqa: E402
from s2v.training import Run, add_common_args, infinite  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, max_steps=1500, batch_size=64, lr=1e-3, checkpointing_steps=500)
    p.add_argument("--holdout-identities", type=int, default=None,
                   help="identities kept out for the report (default: a tenth of the pool, at least 1)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier of both teachers")
    return p.parse_args(argv)


class FacePool(torch.utils.data.Dataset):
    """Images and labels of a face pool, held in memory as uint8; light augmentation when training."""

    def __init__(self, root: str | Path, rows: list[dict], size: int, identities: dict[str, int], train: bool):
        self.images = np.stack([cv2.resize(cv2.imread(str(Path(root) / r["file"]))[..., ::-1], (size, size),
                                           interpolation=cv2.INTER_AREA) for r in rows])
        self.ident = np.array([identities.get(r["identity"], -1) for r in rows])
        self.raw_ident = np.array([int(r["identity"]) for r in rows])
        self.emotion = np.array([EMOTIONS.index(r["emotion"]) for r in rows])
        self.train = train

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1).float() / 255
        if self.train:  # small shifts and exposure changes, as generated frames will have
            s = x.shape[-1] // 20
            dx, dy = np.random.randint(-s, s + 1, 2)
            x = torch.roll(x, (int(dy), int(dx)), (1, 2))
            x = (x * np.random.uniform(0.85, 1.15) + np.random.uniform(-0.06, 0.06)).clamp(0, 1)
        return x, int(self.ident[i]), int(self.emotion[i])


def read_pool(root: Path, holdout: int) -> tuple[list[dict], list[dict]]:
    rows = list(csv.DictReader(open(root / "labels.csv")))
    if not rows:
        raise ValueError(f"{root}/labels.csv is empty")
    ids = sorted({r["identity"] for r in rows}, key=int)
    if holdout is None:
        holdout = max(1, len(ids) // 10)
    if holdout >= len(ids):
        raise ValueError(f"--holdout-identities {holdout} leaves no identity to train on ({len(ids)} in the pool)")
    held = set(ids[len(ids) - holdout:])
    return [r for r in rows if r["identity"] not in held], [r for r in rows if r["identity"] in held]


@torch.no_grad()
def verification(embed: np.ndarray, ident: np.ndarray, threshold: float | None = None, pairs: int = 4000,
                 seed: int = 0) -> tuple[float, float]:
    """Accuracy on balanced same/different pairs by cosine similarity; the threshold is the best one
    on these pairs when not given. Returns (accuracy, threshold)."""
    rng = np.random.default_rng(seed)
    e = embed / (np.linalg.norm(embed, axis=1, keepdims=True) + 1e-8)
    a = rng.integers(0, len(e), pairs * 4)
    b = rng.integers(0, len(e), pairs * 4)
    keep = a != b
    a, b = a[keep], b[keep]
    same = ident[a] == ident[b]
    sa, sb = np.where(same)[0][:pairs // 2], np.where(~same)[0][:pairs // 2]
    idx = np.concatenate([sa, sb])
    sim = np.sum(e[a[idx]] * e[b[idx]], 1)
    label = np.concatenate([np.ones(len(sa), bool), np.zeros(len(sb), bool)])
    if threshold is None:
        cands = np.quantile(sim, np.linspace(0.01, 0.99, 197))
        threshold = float(max(cands, key=lambda t: np.mean((sim > t) == label)))
    return float(np.mean((sim > threshold) == label)), threshold


@torch.no_grad()
def evaluate(id_model, emo_model, data: FacePool, device, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    id_model.eval(), emo_model.eval()
    emb, pred = [], []
    for i in range(0, len(data), batch):
        x = torch.from_numpy(data.images[i:i + batch]).permute(0, 3, 1, 2).float().div(255).to(device)
        emb.append(id_model.embed(x).float().cpu().numpy())
        pred.append(emo_model(x).argmax(1).cpu().numpy())
    id_model.train(), emo_model.train()
    return np.concatenate(emb), np.concatenate(pred)


def main(args) -> dict:
    run = Run(args, "teachers")
    acc = run.accelerator
    root = Path(args.data)
    train_rows, held_rows = read_pool(root, args.holdout_identities)
    ids = {k: i for i, k in enumerate(sorted({r["identity"] for r in train_rows}, key=int))}
    train_set = FacePool(root, train_rows, args.image_size, ids, train=True)
    held_set = FacePool(root, held_rows, args.image_size, ids, train=False)
    w = lambda c: max(8, int(round(c * args.width)))
    base_id, base_emo = IdentityConfig(), EmotionConfig()  # the narrow defaults, scaled by --width
    id_cfg = IdentityConfig(blocks=tuple(tuple(w(c) for c in b) for b in base_id.blocks), fc=w(base_id.fc),
                            num_classes=len(ids), image_size=args.image_size)
    emo_cfg = EmotionConfig(stem=w(base_emo.stem), widths=tuple(w(c) for c in base_emo.widths),
                            image_size=args.image_size)
    id_model, emo_model = IdentityTeacher(id_cfg), EmotionTeacher(emo_cfg)
    opt_id = torch.optim.AdamW(id_model.parameters(), lr=args.learning_rate, weight_decay=1e-4)
    opt_emo = torch.optim.AdamW(emo_model.parameters(), lr=args.learning_rate, weight_decay=1e-4)
    sched = [torch.optim.lr_scheduler.OneCycleLR(o, args.learning_rate, total_steps=args.max_steps + 1,
                                                 pct_start=0.15) for o in (opt_id, opt_emo)]
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.num_workers, persistent_workers=args.num_workers > 0)
    id_model, emo_model, opt_id, opt_emo, loader, *sched = acc.prepare(id_model, emo_model, opt_id, opt_emo,
                                                                        loader, *sched)
    step = run.resume()
    from tqdm.auto import tqdm

    bar = tqdm(total=args.max_steps, initial=step, desc="teachers", disable=not run.is_main)
    batches = infinite(loader)
    while step < args.max_steps:
        x, ident, emo = next(batches)
        with acc.autocast():
            loss_id = F.cross_entropy(id_model(x), ident)
            loss_emo = F.cross_entropy(emo_model(x), emo)
        opt_id.zero_grad(set_to_none=True)
        opt_emo.zero_grad(set_to_none=True)
        acc.backward(loss_id + loss_emo)
        opt_id.step(), opt_emo.step()
        for s in sched:
            s.step()
        step += 1
        bar.update()
        if step % args.logging_steps == 0:
            bar.set_postfix(id=f"{loss_id.item():.3f}", emo=f"{loss_emo.item():.3f}")
            run.log({"loss/identity": loss_id.item(), "loss/emotion": loss_emo.item()}, step)
        run.maybe_checkpoint(step, lambda out: save(acc, id_model, emo_model, out, None))
    bar.close()

    # report on the held-out identities (threshold fixed on training identities)
    device = acc.device
    uid, ue = acc.unwrap_model(id_model), acc.unwrap_model(emo_model)
    tr_eval = FacePool(root, train_rows, args.image_size, ids, train=False)
    emb_tr, _ = evaluate(uid, ue, tr_eval, device)
    _, thr = verification(emb_tr, tr_eval.raw_ident, seed=args.seed)
    emb_h, pred_h = evaluate(uid, ue, held_set, device)
    ver, _ = verification(emb_h, held_set.raw_ident, thr, seed=args.seed + 1)
    metrics = {"verification_accuracy_heldout": round(ver, 4), "verification_threshold": round(thr, 4),
               "emotion_accuracy_heldout": round(float(np.mean(pred_h == held_set.emotion)), 4),
               "train_identities": len(ids), "heldout_identities": len({r["identity"] for r in held_rows}),
               "train_images": len(train_set), "heldout_images": len(held_set), "steps": step}
    run.log({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, float)}, step)
    acc.print(json.dumps(metrics))
    run.finish(step, lambda out: save(acc, id_model, emo_model, out, metrics, args))
    return metrics


def save(acc, id_model, emo_model, out: Path, metrics: dict | None, args=None) -> None:
    uid, ue = acc.unwrap_model(id_model), acc.unwrap_model(emo_model)
    m = json.dumps(metrics, indent=1) if metrics else "(training in progress)"
    uid.save_pretrained(out / "identity", card=f"# s2v identity teacher (T_id)\n\nVGG-shaped, trained on the s2v "
                        f"synthetic face pool for identity classification; fc7 is the embedding.\n\n```\n{m}\n```\n")
    ue.save_pretrained(out / "emotion", card=f"# s2v emotion teacher (T_emo)\n\nSE-ResNet, six CREMA-D emotion "
                       f"classes ({', '.join(EMOTIONS)}), trained on the s2v synthetic face pool.\n\n```\n{m}\n```\n")
    if metrics:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        settings = {k: v for k, v in vars(args).items() if k != "push_to_hub"} if args else {}
        (out / "README.md").write_text(
            "# s2v face teachers\n\nT_id (identity/) and T_emo (emotion/) trained by `train/teachers.py` on a "
            "synthetic face pool (`python -m s2v.corpus faces`), identities disjoint from the corpus actors.\n\n"
            f"## Metrics on held-out identities\n\n```\n{m}\n```\n\n## Settings\n\n```\n"
            f"{json.dumps(settings, indent=1)}\n```\n\n## Limitations\n\nTrained on rendered faces only; "
            "for real video use the public VGGFace / FER+ weights (see the s2v README).\n")


if __name__ == "__main__":
    main(parse_args())
