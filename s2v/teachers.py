"""Face teachers: T_id (VGG-shaped identity network) and T_emo (squeeze-and-excitation ResNet).

The paper distils from VGG16 trained on VGGFace (4,096-d fc7 of the first frame) and an SENet
trained on FER+ (averaged over K frames). s2v trains narrow versions on its synthetic face pool
(`train/teachers.py`) and imports the public releases when a user has them:

- `vgg_face_dag.pth`: conv1_1 ... conv5_3, fc6, fc7, fc8 (2,622 identities); RGB 0-255 input at
  224 px minus the mean (129.186, 104.762, 93.594).
- `senet50_ferplus_dag.pth`: SE-ResNet-50 in Caffe naming (conv1_7x7_s2, conv{s}_{b}_1x1_reduce ...,
  classifier), 8 FER+ classes; mean (131.0912, 103.8827, 91.4953); trained on grey faces
  replicated to three channels.

Both teachers take (B, 3, H, W) RGB in [0, 1] and do their own resizing and normalisation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .labels import EMOTIONS
from .modeling import Pretrained

FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FERPLUS_TO_CREMA = {"neutral": "NEU", "happiness": "HAP", "sadness": "SAD", "anger": "ANG", "disgust": "DIS",
                    "fear": "FEA"}


class _Input(nn.Module):
    """Resize to the network's size, optional grey, then (255 x - mean) / std."""

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images in [0, 1], got {tuple(x.shape)}")
        if x.shape[-1] != c.image_size or x.shape[-2] != c.image_size:
            x = F.interpolate(x, size=(c.image_size, c.image_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > c.image_size)
        if c.grey:
            x = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand(-1, 3, -1, -1)
        mean = torch.tensor(c.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(c.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * 255.0 - mean) / std


# ------------------------------------------------------------------------------------- identity
@dataclass(frozen=True)
class IdentityConfig:
    """VGG layout: `blocks` = conv channels per block (each block ends in a 2x2 max pool)."""

    blocks: tuple[tuple[int, ...], ...] = ((16, 16), (32, 32), (64, 64), (128, 128))
    fc: int = 256  # fc6 / fc7 width; fc7 (after ReLU) is the identity embedding
    num_classes: int = 200
    image_size: int = 64
    batch_norm: bool = True
    dropout: float = 0.3
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (64.0, 64.0, 64.0)
    grey: bool = False

    @property
    def embed_dim(self) -> int:
        return self.fc

    @property
    def feature_sizes(self) -> tuple[int, int, int]:
        """Spatial sizes of the three maps `features` returns: image/8, /4, /2 (coarse to fine)."""
        s = self.image_size
        return (s // 8, s // 4, s // 2)

    @property
    def feature_channels(self) -> tuple[int, int, int]:
        return (self.blocks[2][-1], self.blocks[1][-1], self.blocks[0][-1])


VGG16_FACE = IdentityConfig(blocks=((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
                            fc=4096, num_classes=2622, image_size=224, batch_norm=False, dropout=0.5,
                            mean=(129.186279296875, 104.76238250732422, 93.59396362304688), std=(1.0, 1.0, 1.0))


class IdentityTeacher(_Input, Pretrained):
    """T_id. `embed(x)` -> (B, fc) fc7 embedding; `features(x)` -> maps at image/8, /4, /2;
    `forward(x)` -> (B, num_classes) identity logits. Layer names follow vgg_face_dag."""

    config_class = IdentityConfig
    model_type = "s2v-identity-teacher"

    def __init__(self, config: IdentityConfig = IdentityConfig()):
        super().__init__()
        self.config = config
        c_in = 3
        self._convs: list[list[str]] = []
        for b, chans in enumerate(config.blocks, 1):
            names = []
            for i, c_out in enumerate(chans, 1):
                name = f"conv{b}_{i}"
                self.add_module(name, nn.Conv2d(c_in, c_out, 3, padding=1))
                if config.batch_norm:
                    self.add_module(f"{name}_bn", nn.BatchNorm2d(c_out))
                names.append(name)
                c_in = c_out
            self._convs.append(names)
        side = config.image_size // 2 ** len(config.blocks)
        self.fc6 = nn.Linear(c_in * side * side, config.fc)
        self.fc7 = nn.Linear(config.fc, config.fc)
        self.fc8 = nn.Linear(config.fc, config.num_classes)
        self.drop = nn.Dropout(config.dropout)

    def _trunk(self, x: torch.Tensor, keep: int = 0):
        maps = []
        x = self._prep(x)
        for b, names in enumerate(self._convs):
            for name in names:
                x = getattr(self, name)(x)
                if self.config.batch_norm:
                    x = getattr(self, f"{name}_bn")(x)
                x = F.relu(x)
            x = F.max_pool2d(x, 2)
            if b < keep:
                maps.append(x)
            elif keep:
                break
        return x, maps

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The three maps the generator's identity branch is aligned to, coarse to fine:
        [(B, C3, S/8, S/8), (B, C2, S/4, S/4), (B, C1, S/2, S/2)]."""
        _, maps = self._trunk(x, keep=3)
        return maps[::-1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, fc) fc7 activations (after ReLU): the identity embedding nu*."""
        h, _ = self._trunk(x)
        h = self.drop(F.relu(self.fc6(h.flatten(1))))
        return F.relu(self.fc7(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.drop(self.embed(x)))


def import_vgg_face(path: str | os.PathLike) -> IdentityTeacher:
    """Load the public `vgg_face_dag.pth` (a state dict) into the full-scale VGG16 layout."""
    state = _load_state(path)
    model = IdentityTeacher(VGG16_FACE)
    _check_and_load(model, state, Path(path).name)
    return model


# ------------------------------------------------------------------------------------- emotion
@dataclass(frozen=True)
class EmotionConfig:
    """SE-ResNet of bottleneck blocks. Stage s has `depths[s]` blocks of width `widths[s]`
    (bottleneck inside, 4x outside); stride 2 at the start of every stage after the first."""

    stem: int = 16
    stem_kernel: int = 3
    stem_stride: int = 2
    stem_pool: bool = False
    widths: tuple[int, ...] = (8, 16, 32, 64)
    depths: tuple[int, ...] = (1, 1, 2, 1)
    se_reduction: int = 16
    classes: tuple[str, ...] = EMOTIONS
    image_size: int = 64
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (64.0, 64.0, 64.0)
    grey: bool = False
    dropout: float = 0.2


SENET50_FERPLUS = EmotionConfig(stem=64, stem_kernel=7, stem_stride=2, stem_pool=True, widths=(64, 128, 256, 512),
                                depths=(3, 4, 6, 3), classes=FERPLUS_CLASSES, image_size=224,
                                mean=(131.0912, 103.8827, 91.4953), std=(1.0, 1.0, 1.0), grey=True, dropout=0.0)


class _SEBottleneck(nn.Module):
    def __init__(self, c_in: int, width: int, stride: int, reduction: int):
        super().__init__()
        c_out = 4 * width
        self.reduce = nn.Conv2d(c_in, width, 1, stride=stride, bias=False)  # Caffe: stride on the 1x1
        self.reduce_bn = nn.BatchNorm2d(width)
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.conv_bn = nn.BatchNorm2d(width)
        self.increase = nn.Conv2d(width, c_out, 1, bias=False)
        self.increase_bn = nn.BatchNorm2d(c_out)
        self.down = nn.Conv2d(c_out, max(1, c_out // reduction), 1)
        self.up = nn.Conv2d(max(1, c_out // reduction), c_out, 1)
        if stride != 1 or c_in != c_out:
            self.proj = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            self.proj_bn = nn.BatchNorm2d(c_out)
        else:
            self.proj = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.reduce_bn(self.reduce(x)))
        h = F.relu(self.conv_bn(self.conv(h)))
        h = self.increase_bn(self.increase(h))
        gate = torch.sigmoid(self.up(F.relu(self.down(F.adaptive_avg_pool2d(h, 1)))))  # squeeze, excite
        skip = self.proj_bn(self.proj(x)) if self.proj is not None else x
        return F.relu(h * gate + skip)


class EmotionTeacher(_Input, Pretrained):
    """T_emo: (B, 3, H, W) in [0, 1] -> (B, len(classes)) logits. `crema_logits` maps to CREMA-D's
    six classes (for FER+ weights: their neutral/happiness/sadness/anger/disgust/fear)."""

    config_class = EmotionConfig
    model_type = "s2v-emotion-teacher"

    def __init__(self, config: EmotionConfig = EmotionConfig()):
        super().__init__()
        self.config = config
        k = config.stem_kernel
        self.stem = nn.Conv2d(3, config.stem, k, stride=config.stem_stride, padding=k // 2, bias=False)
        self.stem_bn = nn.BatchNorm2d(config.stem)
        c_in = config.stem
        stages = []
        for s, (w, d) in enumerate(zip(config.widths, config.depths)):
            blocks = []
            for b in range(d):
                blocks.append(_SEBottleneck(c_in, w, 2 if (b == 0 and s > 0) else 1, config.se_reduction))
                c_in = 4 * w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.drop = nn.Dropout(config.dropout)
        self.classifier = nn.Conv2d(c_in, len(config.classes), 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) pooled features before the classifier (the expression loss of stage 2 compares these)."""
        h = F.relu(self.stem_bn(self.stem(self._prep(x))))
        if self.config.stem_pool:
            h = F.max_pool2d(h, 3, stride=2, ceil_mode=True)
        for stage in self.stages:
            h = stage(h)
        return F.adaptive_avg_pool2d(h, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.embed(x)[..., None, None])
        return self.classifier(h).flatten(1)

    def crema_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 6) logits in CREMA-D's order (ANG, DIS, FEA, HAP, NEU, SAD)."""
        logits = self(x)
        if tuple(self.config.classes) == EMOTIONS:
            return logits
        names = {FERPLUS_TO_CREMA.get(c, c): i for i, c in enumerate(self.config.classes)}
        missing = [e for e in EMOTIONS if e not in names]
        if missing:
            raise ValueError(f"this emotion teacher has no class for {missing}")
        return logits[:, [names[e] for e in EMOTIONS]]


def ferplus_key(key: str) -> str:
    """Our parameter name for a senet50_ferplus_dag key (e.g. conv3_1_1x1_reduce_bn.weight)."""
    name, _, param = key.rpartition(".")
    if name.startswith("conv1_7x7_s2"):
        return ("stem_bn" if name.endswith("_bn") else "stem") + "." + param
    if name == "classifier":
        return key
    stage_block, _, part = name.partition("_1x1_") if "_1x1_" in name else name.partition("_3x3")
    s, b = (int(v) for v in stage_block[len("conv"):].split("_"))
    if "_1x1_" in name:
        part = {"reduce": "reduce", "reduce_bn": "reduce_bn", "increase": "increase", "increase_bn": "increase_bn",
                "down": "down", "up": "up", "proj": "proj", "proj_bn": "proj_bn"}[part]
    else:
        part = "conv_bn" if part == "_bn" else "conv"
    return f"stages.{s - 2}.{b - 1}.{part}.{param}"


def import_senet_ferplus(path: str | os.PathLike) -> EmotionTeacher:
    """Load the public `senet50_ferplus_dag.pth` into SE-ResNet-50 (8 FER+ classes, grey input)."""
    state = {ferplus_key(k): v for k, v in _load_state(path).items() if not k.endswith("num_batches_tracked")}
    model = EmotionTeacher(SENET50_FERPLUS)
    _check_and_load(model, state, Path(path).name, ignore=("num_batches_tracked",))
    return model


# ------------------------------------------------------------------------------------- helpers
def _load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)  # tensors only, no code
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}


def _check_and_load(model: nn.Module, state: dict, name: str, ignore: tuple[str, ...] = ()) -> None:
    own = {k: v for k, v in model.state_dict().items() if not k.endswith(ignore or ("\0",))}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{name} does not match the expected layout: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}, wrong shapes {wrong[:5]}")
    model.load_state_dict(state, strict=False)


def load_emotion_teacher(directory: str | os.PathLike) -> EmotionTeacher:
    """T_emo, frozen, from a teachers folder (DIR/emotion) or from its emotion folder itself."""
    from .modeling import freeze

    d = Path(directory)
    return freeze(EmotionTeacher.from_pretrained(d / "emotion" if (d / "emotion").is_dir() else d))


def load_teachers(directory: str | os.PathLike) -> tuple[IdentityTeacher, EmotionTeacher]:
    """The two teachers saved by `train/teachers.py` under DIR/identity and DIR/emotion, frozen."""
    from .modeling import freeze

    d = Path(directory)
    return freeze(IdentityTeacher.from_pretrained(d / "identity")), load_emotion_teacher(d)
