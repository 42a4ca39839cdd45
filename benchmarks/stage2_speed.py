"""Training and inference throughput of the stage-2 generator and discriminators.

    python benchmarks/stage2_speed.py [--size 64] [--batch-size 32] [--steps 10] [--device cpu|cuda]
        [--mixed-precision no|bf16] [--compile]

Times full training steps (one G update, one update of each discriminator, the losses of
train/stage2.py; --ops counts the operators a step dispatches, which bound a GPU step at small sizes) on random tensors of the right shapes, then generator-only inference, and prints
frames per second and peak memory (CUDA: max allocated; CPU: the process's peak resident size).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s2v.discriminators import ADVERSARIES, Discriminators, DiscriminatorsConfig  # noqa: E402
from s2v.generator import Generator, GeneratorConfig  # noqa: E402
from s2v.losses import l_grad, l_sim  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--context", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--memory-format", default="channels_last", choices=("channels_last", "contiguous"),
                   help="the networks' layout (train/stage2.py uses channels_last)")
    p.add_argument("--mixed-precision", default="no", choices=("no", "bf16"), help="autocast as train/stage2.py's")
    p.add_argument("--compile", action="store_true", help="torch.compile the generator and discriminators")
    p.add_argument("--ops", action="store_true", help="also count the aten operators one training step dispatches")
    a = p.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda":  # as s2v.training.Run sets them
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    gcfg = GeneratorConfig(size=a.size, context=a.context)
    G = Generator(gcfg).to(dev)
    D = Discriminators(DiscriminatorsConfig(size=a.size, window=gcfg.window, id_channels=gcfg.id_channels)).to(dev)
    fmt = torch.channels_last if a.memory_format == "channels_last" else torch.contiguous_format
    G, D = G.to(memory_format=fmt), D.to(memory_format=fmt)
    if a.compile:
        G = torch.compile(G)
        for name in ("fr", "sync", "id"):
            setattr(D, name, torch.compile(getattr(D, name)))
    autocast = torch.autocast(dev.type, torch.bfloat16, enabled=a.mixed_precision == "bf16")
    opt_g = torch.optim.RMSprop(G.parameters(), lr=3e-4)
    opt_d = torch.optim.RMSprop(D.parameters(), lr=1e-4)
    b = a.batch_size
    c = torch.randn(b, gcfg.window, gcfg.c_dim, device=dev)
    nu, mu = torch.randn(b, gcfg.nu_dim, device=dev), torch.randn(b, gcfg.mu_dim, device=dev)
    real = torch.rand(b, 3, a.size, a.size, device=dev) * 2 - 1
    maps = [torch.randn(b, ch, s, s, device=dev) for ch, s in zip(gcfg.id_channels, gcfg.id_sizes)]
    s = {"real": real, "c": c, "c_off": c.roll(1, 0), "real_maps": maps}

    def step():  # train/stage2.py's step: the adversaries' own losses (s2v.discriminators.ADVERSARIES)
        with autocast:
            fake, fmaps = G(c, nu, mu)
            s.update(fake=fake, maps=fmaps)
            g = sum(a.g_loss(D, s) for a in ADVERSARIES.values()) + 10 * l_sim(fake, real) + 10 * l_grad(fake, real)
        opt_g.zero_grad()
        g.backward()
        opt_g.step()
        s.update(fake=fake.detach(), maps=[m.detach() for m in fmaps])
        with autocast:
            d = sum(a.d_loss(D, s) for a in ADVERSARIES.values())
        opt_d.zero_grad()
        d.backward()
        opt_d.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    step()  # warm-up
    ops = None
    if a.ops:
        from torch.profiler import profile

        with profile() as prof:
            step()
        ops = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    train_fps = a.steps * b / (time.perf_counter() - t)
    G.eval()
    with torch.no_grad(), autocast:
        G(c, nu, mu)
        sync()
        t = time.perf_counter()
        for _ in range(a.steps):
            G(c, nu, mu)
        sync()
        infer_fps = a.steps * b / (time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"device": str(dev), "size": a.size, "batch_size": b, "memory_format": a.memory_format,
                      "mixed_precision": a.mixed_precision, "compile": a.compile, "threads": torch.get_num_threads(),
                      "train_frames_per_s": round(train_fps, 1), "inference_frames_per_s": round(infer_fps, 1),
                      "peak_memory_mb": round(peak, 1), "aten_ops_per_step": ops,
                      "generator_params_m": round(sum(x.numel() for x in G.parameters()) / 1e6, 2),
                      "discriminator_params_m": round(sum(x.numel() for x in D.parameters()) / 1e6, 2)}))


if __name__ == "__main__":
    main()
