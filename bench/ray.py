"""The Ray engine against the local one on this machine: extract and evaluate of one category.

    python bench/ray.py [--backbone efficientnet_lite2] [--variants 8] [--workers 1 2] [--rounds 2]

Data: the bundled Hazelnut Toy photos, the training images in ``--variants`` flips/rotations
(8: a few hundred images). Each round times the extract stage (decode, forward, aggregation,
HDF5 writes) and the evaluate stage's scoring on the local engine and on Ray with each worker
count, in that order, and checks that every engine wrote the same bytes. Ray starts once,
before the first round (its start is printed on its own: a cluster pays it once, not per stage).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# this file is named ray.py: its folder goes last on the path, or `import ray` would import it
sys.path.append(sys.path.pop(0))
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from patchcore import backbones, config  # noqa: E402
from patchcore.engines import ray_pool  # noqa: E402
from patchcore.engines.settings import EngineSettings  # noqa: E402
from patchcore.pipeline import extraction, memory_bank, scored  # noqa: E402
from patchcore.store.model_folder import ModelFolder  # noqa: E402

from sample_data import build_category, extract_params  # noqa: E402


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join((folder / n).read_bytes() for n in ("train.h5", "test.h5"))).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite2")
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    settings, extract_settings = extract_params(args.backbone)
    params = config.load(REPO / "params.yaml")
    engines = {"local": EngineSettings()} | {
        f"ray, {w} worker(s)": EngineSettings(engine="ray", workers=w, object_store_mb=512) for w in args.workers
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        n_train = build_category(root, args.variants)
        began = time.perf_counter()
        ray_pool.start(EngineSettings(engine="ray", object_store_mb=512))
        print(
            f"Ray started in {time.perf_counter() - began:.1f} s; torch threads {torch.get_num_threads()}; backbone {args.backbone}"
        )
        loaded = backbones.build(settings)
        rows: dict[str, list[tuple[float, float, str]]] = {name: [] for name in engines}
        n_images = 0
        for r in range(args.rounds):
            for name, engine in engines.items():
                folder = ModelFolder(Path(tmp) / f"out_{r}_{name.replace(' ', '_').replace(',', '')}")
                meta = {
                    "dataset": "bench",
                    "category": "hazelnut_toy",
                    "backbone": settings.name,
                    "arch": settings.arch,
                }
                done = extraction.run(
                    root, folder.root, settings, loaded, extract_settings, params.aggregation, meta, engine
                )
                n_images = done["images"]
                memory_bank.run(folder.train, folder.bank, params.coreset)
                began = time.perf_counter()
                scored.score(folder, settings, params.evaluate, engine)
                rows[name].append((done["seconds"], time.perf_counter() - began, _digest(folder.root)))
                print(
                    f"round {r + 1}: {name}: extract {done['seconds']:.1f} s, evaluate scoring {rows[name][-1][1]:.1f} s",
                    flush=True,
                )
        print(
            f"\ndata: bundled Hazelnut Toy, {n_train} training images ({args.variants} variants) + test: {n_images} images"
        )
        print(
            "| engine | extract s | extract images/s | vs local | evaluate scoring s | vs local | same bytes as local |"
        )
        print("|---|---|---|---|---|---|---|")
        base_x = statistics.median(x for x, _, _ in rows["local"])
        base_e = statistics.median(e for _, e, _ in rows["local"])
        digest = rows["local"][0][2]
        for name, values in rows.items():
            x, e = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
            same = all(v[2] == digest for v in values)
            print(
                f"| {name} | {x:.1f} | {n_images / x:.1f} | {base_x / x:.2f}x | {e:.1f} | {base_e / e:.2f}x | {same} |"
            )


if __name__ == "__main__":
    main()
