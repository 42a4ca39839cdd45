"""Saving and loading models as config.json + model.safetensors + README.md (a model card).

A model class declares `config_class` (a dataclass) and takes it as its only constructor
argument; `from_pretrained` rebuilds the model from config.json alone and loads the weights from
safetensors (never pickle).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

T = TypeVar("T", bound="Pretrained")
CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type, d: dict) -> Any:
    """Build dataclass `cls` from `d`, turning lists back into tuples and ignoring unknown keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in d.items():
        if k in fields:
            kwargs[k] = _tupled(v)
    return cls(**kwargs)


def _tupled(v):
    if isinstance(v, list):
        return tuple(_tupled(x) for x in v)
    return v


class Pretrained(nn.Module):
    """Mixin: `save_pretrained(dir, card=...)`, `from_pretrained(dir)`."""

    config_class: type = None  # a dataclass
    model_type: str = ""

    def save_pretrained(self, directory: str | os.PathLike, card: str | None = None,
                        extra: dict | None = None) -> Path:
        """Write config.json (with `extra` under "meta"), model.safetensors and a model card."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = {"model_type": self.model_type, **config_to_dict(self.config)}
        if extra:
            cfg["meta"] = extra
        (d / CONFIG).write_text(json.dumps(cfg, indent=1))
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(d / WEIGHTS), metadata={"model_type": self.model_type})
        if card is not None or not (d / CARD).exists():
            (d / CARD).write_text(card or f"# {self.model_type}\n\nSaved by s2v.\n")
        return d

    @classmethod
    def from_pretrained(cls: type[T], directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> T:
        from safetensors.torch import load_file

        d = Path(directory)
        if not (d / CONFIG).exists() or not (d / WEIGHTS).exists():
            raise FileNotFoundError(f"{d} has no {CONFIG} + {WEIGHTS}: not a saved {cls.__name__}")
        raw = json.loads((d / CONFIG).read_text())
        if cls.model_type and raw.get("model_type") not in (None, cls.model_type):
            raise ValueError(f"{d} holds a {raw.get('model_type')!r}, not a {cls.model_type!r}")
        model = cls(config_from_dict(cls.config_class, raw))
        model.load_state_dict(load_file(str(d / WEIGHTS), device=str(map_location)))
        return model

    @staticmethod
    def read_meta(directory: str | os.PathLike) -> dict:
        return json.loads((Path(directory) / CONFIG).read_text()).get("meta", {})


def freeze(module: nn.Module) -> nn.Module:
    """Teachers are frozen explicitly: eval mode, no gradients."""
    return module.eval().requires_grad_(False)


def fingerprint(folder: str | os.PathLike, parts: tuple[str, ...]) -> str | None:
    """A short hash of the weights of `parts` (sub-folders of `folder` holding model.safetensors): what a cache
    records about the models that made it, so it is rebuilt when they change. None if none exists."""
    import hashlib

    h, found = hashlib.sha256(), False
    for part in parts:
        f = Path(folder) / part / WEIGHTS
        if f.exists():
            h.update(f.read_bytes())
            found = True
    return h.hexdigest()[:16] if found else None
