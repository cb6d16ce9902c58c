"""The GPU code paths (torch search, torch k-center, device choice) run here on the CPU device
against the CPU implementations they stand in for."""

import faiss
import numpy as np
import pytest
import torch
from test_sampling import clustered

from patchcore.core import devices, torch_kcenter
from patchcore.core.sampling import greedy_kcenter, greedy_kcenter_plain, project, projection_matrix, start_index
from patchcore.core.scoring import NearestBank, score_images
from patchcore.core.torch_search import TorchFlat
from patchcore.errors import UsageError

CPU = torch.device("cpu")
# CI has no GPU: the CPU device runs the same torch code; on a GPU machine the tests run there too
DEVICES = [CPU] + ([torch.device("cuda", 0)] if torch.cuda.is_available() else [])


def _exact_faiss(bank, queries, n):
    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(bank)
    return index.search(queries, n)


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("tile", [64 * 50, 1 << 26])  # many small tiles; one tile
def test_torch_candidates_are_faiss_exact_rows(tile, device):
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((3000, 48)).astype(np.float32)
    queries = rng.standard_normal((2000, 48)).astype(np.float32)
    flat = TorchFlat(bank, device, tile_values=tile)
    assert tile > 1 << 20 or (flat.bank_chunk < len(bank) and flat.query_chunk < len(queries))
    got_d, got = flat.search(queries, 4)
    expected_d, expected = _exact_faiss(bank, queries, 4)
    assert np.array_equal(np.sort(got, axis=1), np.sort(expected, axis=1))
    assert np.allclose(got_d, expected_d, rtol=1e-4, atol=1e-3)  # faiss's form: squared distances, nearest first


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_nearest_rows_and_distances_equal_faiss_path_except_ties(device):
    rng = np.random.default_rng(1)
    bank = clustered(rng, n=4000, dim=64, clusters=30).astype(np.float32)
    bank = np.concatenate([bank, bank[:50]])  # exact duplicates: ties must go to the lower row on both paths
    queries = np.concatenate([clustered(rng, n=1500, dim=64, clusters=30), bank[:20] + 1e-3]).astype(np.float32)
    on_faiss, on_torch = NearestBank(bank), NearestBank(bank, device=device)
    for k in (1, 9):
        d_f, i_f = on_faiss.search(queries, k)
        d_t, i_t = on_torch.search(queries, k)
        assert np.array_equal(i_f, i_t) and np.array_equal(d_f, d_t)  # the same bytes, not just close
    assert (i_t[-20:, 0] < 4000).all()  # the duplicated rows resolve to the original (lower) row


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_image_scores_and_maps_are_identical_on_both_search_paths(device):
    rng = np.random.default_rng(2)
    bank = rng.standard_normal((2000, 32)).astype(np.float32)
    patches = (rng.standard_normal((6 * 49, 32)) * 1.2).astype(np.float32)
    a = score_images(NearestBank(bank), patches, (7, 7), 9, 56, 4.0)
    b = score_images(NearestBank(bank, device=device), patches, (7, 7), 9, 56, 4.0)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert NearestBank(bank, device=CPU).describe() == {"index": "exact (torch on cpu)"}
    assert not NearestBank(bank, approximate_above=10, device=CPU).approximate  # a device search is always exact


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("kind", ["random", "clustered", "duplicates", "far_from_origin"])
def test_torch_kcenter_picks_equal_the_plain_loop(kind, device):
    # the banks of test_sampling's lazy-vs-plain test
    rng = np.random.default_rng(7)
    if kind == "random":
        pts = rng.normal(size=(6000, 128))
    elif kind == "clustered":
        pts = clustered(rng, n=6000, dim=128, clusters=40)
    elif kind == "duplicates":
        pts = np.repeat(clustered(rng, n=1500, dim=32, clusters=10), 4, axis=0)
    else:
        pts = clustered(rng, n=4000, dim=64, clusters=20) + 300.0
    pts = pts.astype(np.float32)
    ticks = []
    on_device = torch_kcenter.greedy_kcenter(pts, 600, 11, device, advance=ticks.append)
    assert np.array_equal(on_device, greedy_kcenter_plain(pts, 600, 11, progress=False)), kind
    assert sum(ticks) == 600


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_torch_projection_and_selection_pick_what_the_cpu_stage_picks(device):
    rng = np.random.default_rng(3)
    rows = clustered(rng, n=5000, dim=256, clusters=25).astype(np.float32)
    blocks = [rows[:1700], rows[1700:4000], rows[4000:]]
    matrix = projection_matrix(256, 128, 0)
    start = start_index(len(rows), 0)
    on_cpu = greedy_kcenter(project(blocks, matrix), 500, start, progress=False)
    projected = torch_kcenter.project(blocks, matrix, device)
    assert projected.dtype == torch.float32 and projected.shape == (5000, 128)
    # the projection's float32 sums differ from numpy's in the last bits (by CPU: on an AMD EPYC
    # two near-tied picks of this bank swap places, as on the real bank in bench/README.md), so
    # the projection is checked to rounding, the selection exactly on the same points, and the
    # selection from torch's own projection as a set
    assert np.allclose(
        projected.cpu().numpy(), project(blocks, matrix), rtol=0, atol=1e-5 * np.abs(project(blocks, matrix)).max()
    )
    assert np.array_equal(torch_kcenter.greedy_kcenter(project(blocks, matrix), 500, start, device), on_cpu)
    assert set(torch_kcenter.greedy_kcenter(projected, 500, start, device).tolist()) == set(on_cpu.tolist())


def test_torch_kcenter_refuses_what_the_cpu_code_refuses():
    pts = np.ones((10, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="n_pick"):
        torch_kcenter.greedy_kcenter(pts, 11, 0, CPU)
    pts[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        torch_kcenter.greedy_kcenter(pts, 2, 0, CPU)


def test_only_a_gpu_with_a_large_bank_selects_on_the_device():
    assert not torch_kcenter.on_device(CPU, 10**9)
    assert not torch_kcenter.on_device(torch.device("cuda", 0), torch_kcenter.GPU_WINS_FROM - 1)
    assert torch_kcenter.on_device(torch.device("cuda", 0), torch_kcenter.GPU_WINS_FROM)


def test_device_names_resolve_or_fail_in_one_line():
    assert devices.resolve("cpu") == CPU and devices.describe(CPU) == "cpu"
    with pytest.raises(UsageError, match="unknown device 'gpu'"):
        devices.resolve("gpu", "extract.device")
    if torch.cuda.is_available():
        assert devices.resolve("auto").type == "cuda"
        with pytest.raises(UsageError, match="cuda:99"):
            devices.resolve("cuda:99", "evaluate.device")
    else:
        assert devices.resolve("auto") == CPU
        for name in ("cuda", "cuda:1"):
            with pytest.raises(UsageError, match=f"coreset.device: '{name}' asks for a GPU but torch sees none"):
                devices.resolve(name, "coreset.device")
