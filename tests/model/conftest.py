"""Fixtures for the model tests: random transformers SegFormers saved in the Hugging Face layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from model.segformer import VARIANTS

torch.set_num_threads(2)


def make_reference(variant: str, num_labels: int = 150, seed: int = 0) -> SegformerForSemanticSegmentation:
    """A transformers SegFormer with random weights scaled so that activations, attention maps and logits are
    O(1) (the default 0.02 init makes attention nearly uniform and logits tiny, a weak test), with
    non-trivial norms and BatchNorm statistics."""
    v = VARIANTS[variant]
    config = SegformerConfig(
        hidden_sizes=list(v.widths),
        depths=list(v.depths),
        decoder_hidden_size=v.decoder_width,
        num_labels=num_labels,
        id2label={i: f"thing {i}" for i in range(num_labels)},
        label2id={f"thing {i}": i for i in range(num_labels)},
    )
    torch.manual_seed(seed)
    ref = SegformerForSemanticSegmentation(config)
    with torch.no_grad():
        for module in ref.modules():
            if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, 1.5 * fan_in**-0.5)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1)
            if isinstance(module, torch.nn.LayerNorm | torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return ref.eval()


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, torch.nn.Module]]:
    """``hf_folder(variant)`` -> (folder written by ``save_pretrained``, the transformers model); cached."""
    cache: dict[str, tuple[Path, torch.nn.Module]] = {}

    def build(variant: str) -> tuple[Path, torch.nn.Module]:
        if variant not in cache:
            ref = make_reference(variant)
            folder = tmp_path_factory.mktemp(f"hf-{variant}")
            ref.save_pretrained(folder)
            cache[variant] = (folder, ref)
        return cache[variant]

    return build
