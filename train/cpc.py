"""Self-supervised CPC pretraining on the prepared audio (the seen actors' training clips).

    accelerate launch train/cpc.py --data data/prep64 --output-dir runs/cpc

Each step takes random crops of --crop-seconds from training clips and minimises InfoNCE
(predicting z_{t+1..t+12} from c_t against negatives from the batch). The report gives the
prediction accuracy on validation clips and, as the paper's reason for choosing CPC, the accuracy
of a linear probe (ridge) that names the speaker from c_T of whole clips (trained on train clips,
tested on test clips). Use --init to start from a CPC_audio checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s2v.audio import CPC_HOP, SAMPLE_RATE  # noqa: E402
from s2v.linear import ridge_probe  # noqa: E402
from s2v.cpc import CPC, CPCConfig, import_cpc_audio  # noqa: E402
from s2v.data import Prepared  # noqa: E402
from s2v.training import Run, add_common_args, infinite  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, max_steps=1500, batch_size=16, lr=2e-4, checkpointing_steps=500)
    p.add_argument("--crop-seconds", type=float, default=1.28)
    p.add_argument("--hidden", type=int, default=256, help="g_enc and g_ar width")
    p.add_argument("--ar-mode", default="LSTM", choices=("LSTM", "GRU"))
    p.add_argument("--negatives", type=int, default=128)
    p.add_argument("--predictor-learning-rate", type=float, default=5e-3,
                   help="the 12 linear predictors learn faster than g_enc/g_ar (--learning-rate)")
    p.add_argument("--init", default=None, help="a CPC_audio checkpoint (.pt) or a saved s2v CPC folder")
    return p.parse_args(argv)


class AudioCrops(torch.utils.data.Dataset):
    """Random fixed-length crops of the clips' audio (zero-padded when a clip is shorter)."""

    def __init__(self, prep: str | Path, split, n_samples: int):
        self.data = Prepared(prep)
        self.ids = self.data.split(split)
        self.n = n_samples

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> torch.Tensor:
        a = self.data.audio(self.ids[k])
        if a.size > self.n:
            s = np.random.randint(0, a.size - self.n + 1)
            a = a[s:s + self.n]
        return torch.from_numpy(np.pad(a, (0, self.n - a.size)))


@torch.no_grad()
def context_last(model: CPC, data: Prepared, ids: list[int], device, max_seconds: float = 6.0) -> np.ndarray:
    """(len(ids), H) c_T of each whole clip."""
    out = []
    for i in ids:
        a = data.audio(i)[: int(max_seconds * SAMPLE_RATE)]
        c, _ = model(torch.from_numpy(a)[None].to(device))
        out.append(c[0, -1].float().cpu().numpy())
    return np.stack(out)


@torch.no_grad()
def evaluate(model: CPC, prep: str | Path, crop: int, device, batch: int = 16) -> dict:
    model.eval()
    data = Prepared(prep)
    val = AudioCrops(prep, "val", crop)
    accs = []
    torch.manual_seed(0)
    np.random.seed(0)
    for s in range(0, len(val), batch):
        wav = torch.stack([val[k] for k in range(s, min(s + batch, len(val)))]).to(device)
        c, z = model(wav)
        accs.append(model.loss(c, z)[1].cpu().numpy())
    train_ids, test_ids = data.split("train"), data.split("test")
    xtr, xte = context_last(model, data, train_ids, device), context_last(model, data, test_ids, device)
    ytr = np.array([data.clips[i]["actor"] for i in train_ids])
    yte = np.array([data.clips[i]["actor"] for i in test_ids])
    acc_k = np.mean(accs, 0)
    model.train()
    return {"cpc_accuracy_val": round(float(acc_k.mean()), 4),
            "cpc_accuracy_val_k1": round(float(acc_k[0]), 4), "cpc_accuracy_val_k12": round(float(acc_k[-1]), 4),
            "speaker_probe_top1_test": round(float(np.mean(ridge_probe(xtr, ytr, xte) == yte)), 4),
            "speakers": int(len(set(ytr)))}


def main(args) -> dict:
    run = Run(args, "cpc")
    acc = run.accelerator
    crop = int(round(args.crop_seconds * SAMPLE_RATE / CPC_HOP)) * CPC_HOP
    if args.init:
        model = import_cpc_audio(args.init) if Path(args.init).is_file() else CPC.from_pretrained(args.init)
    else:
        model = CPC(CPCConfig(hidden_encoder=args.hidden, hidden_ar=args.hidden, ar_mode=args.ar_mode,
                              n_negatives=args.negatives))
    # the predictors need a much larger step than the encoder, or the scores never leave chance
    body = list(model.gEncoder.parameters()) + list(model.gAR.parameters())
    opt = torch.optim.Adam([{"params": body, "lr": args.learning_rate},
                            {"params": model.predictors.parameters(), "lr": args.predictor_learning_rate}])
    loader = torch.utils.data.DataLoader(AudioCrops(args.data, "train", crop), batch_size=args.batch_size,
                                         shuffle=True, drop_last=True, num_workers=args.num_workers,
                                         persistent_workers=args.num_workers > 0)
    model, opt, loader = acc.prepare(model, opt, loader)
    step = run.resume()
    from tqdm.auto import tqdm

    bar = tqdm(total=args.max_steps, initial=step, desc="cpc", disable=not run.is_main)
    unwrapped = acc.unwrap_model(model)
    batches = infinite(loader)
    while step < args.max_steps:
        wav = next(batches)
        with acc.autocast():
            c, z = model(wav)
            loss, accs = unwrapped.loss(c, z)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        bar.update()
        if step % args.logging_steps == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{accs.mean().item():.3f}")
            run.log({"loss/infonce": loss.item(), "accuracy/train": accs.mean().item()}, step)
        run.maybe_checkpoint(step, lambda out: unwrapped.save_pretrained(out))
    bar.close()
    metrics = {**evaluate(unwrapped, args.data, crop, acc.device), "steps": step}
    acc.print(json.dumps(metrics))
    run.log({f"eval/{k}": v for k, v in metrics.items()}, step)

    def save(out: Path) -> None:
        card = ("# s2v CPC audio encoder\n\nCPC_audio layout (g_enc 5 conv, channel norm; g_ar "
                f"{unwrapped.config.ar_mode}), self-supervised on {args.data} (seen actors' training clips).\n\n"
                f"```\n{json.dumps(metrics, indent=1)}\n```\n")
        unwrapped.save_pretrained(out, card=card)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))

    run.finish(step, save)
    return metrics


if __name__ == "__main__":
    main(parse_args())
