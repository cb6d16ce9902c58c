"""The exported graph's Eq. 7 against the paper's definition, on a bank where the reweighting moves the score.

With the bank far from the test patches, exp(||m_test - m*||) is negligible against the sum over
N_b(m*) and every weight is ~1: a graph that sums over the wrong neighbours scores the same. Here
the bank's rows crowd around the test patches, so the weights are far from 1 and a wrong
neighbourhood gives a different score (checked below, so this test can fail)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from patchcore.config import BackboneSettings
from patchcore.export.graph import InspectionGraph

GRID, CROP, DIM, B = 4, 32, 6, 5


class GridFeatures(nn.Module):
    """A stand-in backbone and aggregation: each 8 x 8 cell's mean colour, projected to DIM values."""

    def __init__(self, settings: BackboneSettings, projection: torch.Tensor):
        super().__init__()
        self.settings, self.tap = settings, nn.Identity()
        self.register_buffer("projection", projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, GRID).permute(0, 2, 3, 1) @ self.projection  # (N, GRID, GRID, DIM)


def eq7(patches: np.ndarray, bank: np.ndarray, b: int, around: str = "m_star") -> float:
    """s = (1 - exp(||m_test - m*||) / sum over m in N_b(m*) of exp(||m_test - m||)) * s*, in float64 (paper, Eq. 7)."""
    d = np.sqrt(((patches[:, None, :] - bank[None, :, :]) ** 2).sum(-1))  # (P, M)
    nearest = d.min(axis=1)
    top = int(np.argmax(nearest))
    s_star, m_test = nearest[top], patches[top]
    m_star = bank[int(np.argmin(d[top]))]
    centre = m_star if around == "m_star" else m_test  # the wrong one: the test patch's own neighbourhood
    support = np.argsort(np.sqrt(((bank - centre) ** 2).sum(-1)), kind="stable")[:b]
    to_support = np.sqrt(((bank[support] - m_test) ** 2).sum(-1))
    return float((1.0 - np.exp(s_star) / np.exp(to_support).sum()) * s_star)


def test_the_graphs_eq7_is_the_papers_where_it_is_active():
    rng = np.random.default_rng(0)
    settings = BackboneSettings(
        name="b",
        arch="timm/tf_efficientnet_lite0",
        weights="random",
        layers=("blocks.2",),
        resize=CROP,
        crop=CROP,
        target_dim=DIM,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
    )
    features = GridFeatures(settings, torch.from_numpy(rng.standard_normal((3, DIM)).astype(np.float32)))
    images = torch.from_numpy(rng.integers(0, 256, (3, CROP, CROP, 3), dtype=np.uint8))
    x = (images.permute(0, 3, 1, 2).float() - torch.tensor(settings.mean).reshape(1, 3, 1, 1) * 255) / (
        torch.tensor(settings.std).reshape(1, 3, 1, 1) * 255
    )
    with torch.no_grad():
        patches = features(x).reshape(3, GRID * GRID, DIM).numpy().astype(np.float64)
    # a crowded bank: every test patch's neighbourhood at distances of order 1
    bank = np.concatenate([p + 0.6 * rng.standard_normal(p.shape) for p in patches] * 2).astype(np.float32)
    graph = InspectionGraph(features, bank, B, (GRID, GRID), sigma=1.0).eval()
    with torch.no_grad():
        scores, _, _ = graph(images)
    for i in range(3):
        expected = eq7(patches[i], bank.astype(np.float64), B)
        s_star = float(np.sqrt(((patches[i][:, None] - bank[None].astype(np.float64)) ** 2).sum(-1)).min(1).max())
        assert expected < 0.95 * s_star  # the reweighting is active on this bank
        assert (
            abs(eq7(patches[i], bank.astype(np.float64), B, around="m_test") - expected) > 1e-3 * expected
        )  # and the neighbourhood matters
        assert float(scores[i]) == np.float32(expected) or abs(float(scores[i]) - expected) <= 1e-5 * expected, (
            i,
            float(scores[i]),
            expected,
        )
