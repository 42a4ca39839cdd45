"""s2v.pitch: F0 per CPC frame (YIN) and the gain-free pitch statistics S_emo reads with --emo-input prosody-pitch."""
import math

import torch

from s2v.pitch import N_PITCH, PERIODIC, frame_pitch, pitch_stats
from s2v.students import N_PROSODY, Students, StudentsConfig, VOICED_NEPERS, frame_level, relative_prosody

SR = 16000


def voice(f0: torch.Tensor, harmonics: int = 8) -> torch.Tensor:
    """A harmonic tone following f0 (one value per sample), 1/k amplitudes: a vowel without formants."""
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    return 0.3 * sum(torch.sin(k * phase) / k for k in range(1, harmonics + 1))


def test_frame_pitch_follows_a_glide_and_tells_tone_from_noise_and_silence():
    t = torch.arange(2 * SR) / SR
    f0 = 110 + 110 * t / 2  # 110 -> 220 Hz over two seconds, an octave
    x = voice(f0)
    est, ap = frame_pitch(x[None], 200)
    assert est.shape == ap.shape == (1, 200)
    truth = f0[torch.arange(200) * 160 + 80]  # frame j is centred on sample 160 j + 80
    inner = slice(5, 195)  # the first and last frames' windows run off the clip
    assert ((est[0, inner] / truth[inner] - 1).abs() < 0.01).all()
    assert (ap[0, inner] < 0.05).all()
    for gain in (0.03, 10.0):  # a ratio of energies: the microphone's level does not matter
        e2, a2 = frame_pitch(x[None] * gain, 200)
        assert torch.allclose(e2, est, rtol=1e-3) and torch.allclose(a2, ap, atol=1e-3)
    noise = torch.randn(1, SR, generator=torch.Generator().manual_seed(0)) * 0.1
    assert (frame_pitch(noise, 100)[1] > PERIODIC).float().mean() > 0.95
    assert (frame_pitch(torch.zeros(1, SR), 100)[1] == 1).all()
    # batched rows are independent, and a row shorter than the frames asked for is padded with silence
    both = torch.stack([x[:SR], noise[0]])
    eb, ab = frame_pitch(both, 100)
    assert torch.allclose(eb[0], frame_pitch(x[None, :SR], 100)[0][0], rtol=1e-4)
    assert (frame_pitch(x[None, :SR // 2], 100)[1][0, 60:] == 1).all()


def test_pitch_stats_read_level_and_range_but_not_gain_or_trimmed_silence():
    t = torch.arange(2 * SR) / SR  # two whole cycles of the intonation below
    syllables = (torch.sin(2 * math.pi * 3 * t) > -0.3).float()  # voiced stretches with short gaps

    def clip(base, depth):  # intonation: base Hz with a 1 Hz swing of `depth` semitones
        f0 = base * 2 ** (depth * torch.sin(2 * math.pi * t) / 12)
        return torch.cat([torch.zeros(SR // 4), voice(f0) * syllables, torch.zeros(SR // 2)])

    def stats(x):
        n = x.numel() // 160
        f0, ap = frame_pitch(x[None], n)
        level = frame_level(x[None], n)[0]
        return pitch_stats(f0[0], ap[0], level > level.max() - VOICED_NEPERS)

    calm, raised, wide = stats(clip(120, 1.0)), stats(clip(240, 1.0)), stats(clip(120, 4.0))
    assert calm.shape == (N_PITCH,) and torch.isfinite(calm).all()
    assert abs(float(calm[0]) - 12 * math.log2(1.2)) < 0.3  # median, semitones above 100 Hz
    assert abs(float(raised[0] - calm[0]) - 12) < 0.3  # an octave up
    assert float(wide[1]) > 3 * float(calm[1]) and float(wide[2]) > 3 * float(calm[2])  # range and SD
    assert float(wide[3]) > float(calm[3])  # faster pitch movement
    assert 0.5 < float(calm[4]) <= 1.0 and float(calm[5]) < 0.1  # mostly pitched, clean
    x = clip(120, 2.0)
    s = stats(x)
    assert torch.allclose(stats(x * 10 ** (10 / 20)), s, atol=1e-3)
    assert torch.allclose(stats(x * 10 ** (-10 / 20)), s, atol=1e-3)
    assert torch.allclose(stats(torch.cat([torch.zeros(SR), x])), s, atol=1e-2)  # more silence before
    # whispered (noise) speech: nothing pitched, all zeros with a pitched share of 0
    hiss = torch.randn(SR, generator=torch.Generator().manual_seed(1)) * 0.1 * syllables[:SR]
    assert float(stats(hiss)[4]) < 0.2


def test_prosody_pitch_students_read_the_pitch_and_not_the_gain():
    """--emo-input prosody-pitch: S_emo's input is prosody-rel's plus N_PITCH pitch statistics; a gain changes
    none of it (c from the CPC, which normalises each input, is held fixed here)."""
    s = Students(StudentsConfig(in_dim=8, id_dim=4, emo_dim=6, hidden=16, emo_input="prosody-pitch"))
    assert s.config.emo_features == 2 * 8 + N_PROSODY + N_PITCH
    t = torch.arange(SR) / SR
    x = torch.cat([voice(150 * 2 ** (2 * torch.sin(2 * math.pi * t) / 12)), torch.zeros(SR // 4)])
    c = torch.randn(1, x.numel() // 160, 8)
    e = s.emotion_input(c, x[None])
    assert e.shape == (1, s.config.emo_features)
    level = frame_level(x[None], c.shape[1])[0]
    assert torch.allclose(e[0, 16:16 + N_PROSODY], relative_prosody(level), atol=1e-5)
    assert abs(float(e[0, 16 + N_PROSODY]) - 12 * math.log2(1.5)) < 0.3  # the median pitch, 150 Hz
    for gain in (10 ** (-10 / 20), 10 ** (10 / 20)):
        assert torch.allclose(s.emotion_input(c, x[None] * gain), e, atol=1e-3)
    s.eval()
    nu, mu = s(c, e=e)
    assert mu.shape == (1, 6)
