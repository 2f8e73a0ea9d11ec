# ruff: noqa: PTH118
"""Write checkpoints the way the paper's notebook did: classes in ``__main__``, ``torch.save(model)``.

Usage: python make_paper_checkpoints.py OUT_DIR. Writes concat.pt, gating.pt, evil.pt,
evil_nested.pt and the expected fusion outputs for fixed inputs (inputs.npy, *_expected.npy).
The layer code is written from the paper's description (branch MLPs, mix MLP, gates).
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def branch(in_features):
    return nn.Sequential(
        nn.Linear(in_features, 768), nn.BatchNorm1d(768), nn.ReLU(), nn.Dropout(p=0.15),
        nn.Linear(768, 576), nn.BatchNorm1d(576), nn.LeakyReLU(), nn.Dropout(p=0.1),
        nn.Linear(576, 768),
    )  # fmt: skip


class HubertLabseConcat(nn.Module):
    def __init__(self, in_features_text, in_features_image, mode="joint"):
        super().__init__()
        self.mode = mode
        self.image_seq = branch(in_features_image)
        self.audio_seq = branch(in_features_text)
        self.mix_seq = nn.Sequential(
            nn.Linear(2 * 768, 1024), nn.BatchNorm1d(1024), nn.LeakyReLU(),
            nn.Linear(1024, 800), nn.LeakyReLU(), nn.Linear(800, 768),
        )  # fmt: skip

    def forward(self, x_audio, x_image):
        return self.mix_seq(torch.cat((self.audio_seq(x_audio), self.image_seq(x_image)), dim=1))


class HubertLabseGating(nn.Module):
    def __init__(self, in_features_text, in_features_image):
        super().__init__()
        self.image_seq = branch(in_features_image)
        self.text_seq = branch(in_features_text)
        self.input_gate_text = nn.Sequential(nn.Linear(768, 768), nn.Sigmoid())
        self.input_gate_image = nn.Sequential(nn.Linear(768, 768), nn.Sigmoid())
        self.forget_gate_text = nn.Sequential(nn.Linear(768, 768), nn.Sigmoid())
        self.forget_gate_image = nn.Sequential(nn.Linear(768, 768), nn.Sigmoid())
        self.tanh_text = nn.Sequential(nn.Linear(768, 768), nn.Tanh())
        self.tanh_image = nn.Sequential(nn.Linear(768, 768), nn.Tanh())
        self.weight = nn.Sequential(nn.Linear(768 * 2, 768 * 2))

    def forward(self, x_text, x_image):
        x1, x2 = self.text_seq(x_text), self.image_seq(x_image)
        c1 = self.input_gate_text(x1) * self.tanh_text(x1) + self.forget_gate_text(x1) * x1
        c2 = self.input_gate_image(x2) * self.tanh_image(x2) + self.forget_gate_image(x2) * x2
        w = torch.softmax(self.weight(torch.cat((c1, c2), dim=-1)), dim=-1)
        return w[:, :768] * c1 + w[:, 768:] * c2


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def trained_like(model):
    # Give the BatchNorm layers non-trivial running statistics, as training would.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1024) * 2 + 0.5, torch.randn(16, 1000) * 3 - 1)
    return model.eval()


def main(out):
    torch.manual_seed(0)
    inputs_a, inputs_i = torch.randn(5, 1024), torch.randn(5, 1000)
    np.save(os.path.join(out, "inputs_a.npy"), inputs_a.numpy())
    np.save(os.path.join(out, "inputs_i.npy"), inputs_i.numpy())
    for name, model in (("concat", HubertLabseConcat(1024, 1000)), ("gating", HubertLabseGating(1024, 1000))):
        model = trained_like(model)
        with torch.no_grad():
            # the authors' inference guidance: L2-normalise both feature sets before the head
            expected = model(F.normalize(inputs_a, dim=1), F.normalize(inputs_i, dim=1))
            np.save(os.path.join(out, f"{name}_expected.npy"), expected.numpy())
        torch.save(model, os.path.join(out, f"{name}.pt"))
    marker = os.path.join(out, "pwned")
    torch.save(Evil(marker), os.path.join(out, "evil.pt"))
    nested = HubertLabseConcat(8, 8)
    nested.payload = Evil(marker)
    torch.save(nested, os.path.join(out, "evil_nested.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
