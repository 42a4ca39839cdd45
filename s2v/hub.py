"""Finding a model: a local folder, or a Hugging Face Hub repo id (tried first when given), with the
bundled `checkpoints/default` as the fallback when the Hub cannot be reached."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints" / "default"


def resolve_model(name: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(local folder, a line saying where it came from). `name`: a folder, a Hub repo id
    ("user/model"), or None for $S2V_MODEL or the bundled model."""
    name = str(name or os.environ.get("S2V_MODEL") or BUNDLED)
    p = Path(name)
    if p.is_dir():
        return p, f"model: {p}"
    if "/" in name and not p.exists() and not name.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(repo_id=name, allow_patterns=["*.json", "*.safetensors", "*.md"],
                                      etag_timeout=5)
            return Path(local), f"model: {name} from the Hugging Face Hub"
        except Exception as exc:  # offline, unknown repo, ...
            msg = (f"could not load {name} from the Hugging Face Hub ({type(exc).__name__}); "
                   f"using the bundled model {BUNDLED}")
            warnings.warn(msg, stacklevel=2)
            if BUNDLED.is_dir():
                return BUNDLED, msg
            raise FileNotFoundError(msg + ", which is missing too") from exc
    raise FileNotFoundError(f"no model folder {name}")
