"""The training helpers every trainer shares."""
import pytest
import torch

from s2v.training import infinite


def test_infinite_cycles_and_refuses_an_empty_loader():
    """Every trainer draws its batches through `infinite`: it reshuffles pass after pass, and a training set
    smaller than one batch (drop_last) is a clear error, not an endless loop."""
    data = torch.utils.data.TensorDataset(torch.arange(6))
    batches = infinite(torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, drop_last=True))
    assert all(len(next(batches)[0]) == 4 for _ in range(5))  # 1 batch a pass, 5 passes
    small = infinite(torch.utils.data.DataLoader(data, batch_size=8, drop_last=True))
    with pytest.raises(ValueError, match="6 item.*fewer than one batch of 8"):
        next(small)


def test_hub_push_leaves_out_training_state_caches_and_samples():
    """The push's ignore patterns, applied by huggingface_hub's own filter, keep the model and its card and drop
    checkpoints, stage 2's feature cache, sample grids and logs."""
    from huggingface_hub.utils import filter_repo_objects

    from s2v.training import PUSH_IGNORE

    files = ["generator/model.safetensors", "generator/config.json", "README.md", "stage2.json",
             "checkpoint-500/model.safetensors", "features/c.npy", "features/features.json",
             "samples/step-000500.png", "logs/events.out.tfevents.1", "train.log", "log.jsonl"]
    kept = set(filter_repo_objects(files, ignore_patterns=PUSH_IGNORE))
    assert kept == {"generator/model.safetensors", "generator/config.json", "README.md", "stage2.json"}
