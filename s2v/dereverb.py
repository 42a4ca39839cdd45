"""Dereverberation of 16 kHz speech by weighted prediction error (WPE; Nakatani et al. 2010, Yoshioka &
Nakatani 2012), the `nara_wpe` implementation (MIT): in each STFT band the late reverberation is predicted
from the frames `delay` .. `delay + taps` before and subtracted, with the prediction filter re-estimated
`iterations` times under the dereverberated signal's power.

Single channel. Used as the sync expert's front end (`SyncNetConfig.dereverb`): a room's reverberation
smears each sound over the next half second, which the expert's 0.2 s audio windows cannot tell from
speech in the next window. Settings chosen on 20 seen test clips in `s2v.degrade`'s room (RT60 0.6 s):
taps 60 (8 ms hop, 0.48 s of past) gave ground truth's LSE-C the most back; 10, 30, 80 and 100 less.
"""
from __future__ import annotations

import numpy as np

TAPS, DELAY, ITERATIONS, SIZE, SHIFT = 60, 2, 3, 512, 128


def dereverb(wav: np.ndarray, taps: int = TAPS, delay: int = DELAY, iterations: int = ITERATIONS) -> np.ndarray:
    """(N,) float audio -> (N,) float32 with its late reverberation removed, at the input's peak level. Audio
    shorter than the filter's reach (or silent) comes back as it is."""
    from nara_wpe.utils import istft, stft
    from nara_wpe.wpe import wpe

    x = np.asarray(wav, np.float32)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if x.size < SIZE or peak == 0.0:
        return x.copy()
    spec = stft(x.astype(np.float64), size=SIZE, shift=SHIFT)  # (T, F)
    if len(spec) <= taps + delay:
        return x.copy()
    z = wpe(spec.T[:, None, :], taps=taps, delay=delay, iterations=iterations)[:, 0, :]  # (F, 1, T) in and out
    y = istft(z.T, size=SIZE, shift=SHIFT)[: x.size]
    y = np.pad(y, (0, x.size - len(y)))
    return (y * (peak / (np.abs(y).max() + 1e-12))).astype(np.float32)


def _room_then_dereverb(job: tuple[np.ndarray, int]) -> np.ndarray:
    from .degrade import CONDITIONS

    wav, seed = job
    return dereverb(CONDITIONS["reverb"](wav, np.random.default_rng(seed))).astype(np.float16)


def _one_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def dereverbed_rooms(wavs: list[np.ndarray], seeds: list[int], show: bool = True) -> list[np.ndarray]:
    """Each voice in `s2v.degrade`'s room (drawn from its seed), then dereverberated: what an expert with the
    front end hears of reverberant speech (float16). WPE takes 0.2–0.3 s for a 2 s clip, too slow for a data
    loader, so a trainer makes these once, in a worker process per core held to one BLAS thread (with the
    parent's thread pools, two workers on two cores ran three to ten times slower)."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1, initializer=_one_thread) as pool:
        return list(tqdm(pool.map(_room_then_dereverb, zip(wavs, seeds), chunksize=8), total=len(wavs),
                         disable=not show, desc="dereverberated rooms"))
