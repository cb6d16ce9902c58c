"""The WideResNet50 path against patchcore-inspection (the paper's reference code), stage by stage, on the
same seed-0 random torchvision weights and one synthetic category (issue 34 item 9).

    python bench/reference_wrn50.py --inspection-src PATCHCORE_INSPECTION/src [--train 10] [--test 10] [--size 900]
        [--data DIR] [--threads 1] [--ratio 0.1] [--neighbours 9]

Runs in the project's venv (torch, torchvision, faiss-cpu, scikit-learn, scipy); the reference
code is imported from --inspection-src, a checkout of amazon-science/patchcore-inspection (not
installed, never a dependency, never copied). The tests run it at a tiny size when
PATCHCORE_INSPECTION_SRC names such a checkout.

Sides:
- project: the stages' own code (backbones.build with weights: random, LayerTap,
  PatchFeatures, place with params' channels_last/precision, stream.host_batches);
- inspection: patchcore-inspection as bench/peers.py ran it before: ``torch.manual_seed(0);
  wide_resnet50_2(weights=None)`` handed to ``PatchCore.load``, which calls
  ``NetworkFeatureAggregator.feature_dimensions`` on a ones image while the network is still in
  train mode, so every BatchNorm up to layer3 moves its running statistics 10% towards that
  image's; then its MVTecDataset transforms, ``_embed``, FaissNN, max patch score;
- inspection-eval: the same with ``backbone.eval()`` before ``PatchCore.load``.

Prints markdown tables: (1) weights and BN buffers, (2) stage by stage (inputs, layer maps, patch
features, patch and image scores with the full bank and Eq. 7 off), (3) image AUROC for each
feature source x bank (full / the project's k-center / the reference's approximate greedy) x
Eq. 7 (off / b neighbours): each default switched on alone. Figures: bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def rel(a, b) -> tuple[float, float]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = np.abs(a - b)
    return float(d.max()), float(d.max() / max(np.abs(b).max(), 1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inspection-src", required=True, help="patchcore-inspection's src folder")
    ap.add_argument("--project", default=str(Path(__file__).resolve().parent.parent), help="the project's checkout")
    ap.add_argument("--train", type=int, default=10)
    ap.add_argument("--test", type=int, default=10)
    ap.add_argument("--size", type=int, default=900)
    ap.add_argument("--data", help="where the synthetic category is (built if missing); default: a temporary folder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ratio", type=float, default=0.1, help="coreset ratio of the coreset switches")
    ap.add_argument("--neighbours", type=int, default=9, help="b of Eq. 7 in the Eq. 7 switch")
    ap.add_argument("--maps-images", type=int, default=4, help="test images whose layer maps are compared")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    project = Path(args.project).resolve()
    sys.path.insert(0, str(project))
    sys.path.insert(0, str(project / "bench"))
    sys.path.insert(0, str(Path(args.inspection_src).resolve()))

    import faiss
    import torch
    import torchvision
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    from synthetic_mvtec import build

    import patchcore.common
    import patchcore.patchcore
    import patchcore.sampler
    from patchcore import backbones, config
    from patchcore.backbones import LayerTap, PatchFeatures, stream
    from patchcore.core import sampling, scoring
    from patchcore.core.features import aggregate
    from patchcore.datasets.images import image_transform, load_rgb
    from patchcore.datasets.mvtec import DatasetSplit, MVTecDataset

    tmp = None
    if args.data:
        data_root = Path(args.data)
    else:
        tmp = tempfile.TemporaryDirectory()
        data_root = Path(tmp.name)
    category = "synthetic_00"
    if not (data_root / category / "train").is_dir():
        build(data_root, 1, args.train, args.test, args.size, workers=1)
    root = data_root / category
    cpu = torch.device("cpu")

    # ---------- the two sides' networks ----------
    params = config.load(project / "params.yaml")
    settings = params.backbone("wide_resnet50").model_copy(update={"weights": "random"})
    loaded = backbones.build(settings)  # seed 0 inside, eval() at the end
    proj_model = loaded.model
    proj_features = PatchFeatures(
        LayerTap(proj_model, settings.layers), settings, params.aggregation, params.extract.precision
    )
    backbones.place(proj_model, cpu, params.extract.channels_last)
    fmt = torch.channels_last if params.extract.channels_last else torch.contiguous_format

    def inspection(eval_first: bool):
        torch.manual_seed(0)
        net = torchvision.models.wide_resnet50_2(weights=None)
        net.name, net.seed = "wideresnet50", 0
        if eval_first:
            net.eval()
        model = patchcore.patchcore.PatchCore(cpu)
        model.load(
            backbone=net,
            layers_to_extract_from=list(settings.layers),
            device=cpu,
            input_shape=(3, settings.crop, settings.crop),
            pretrain_embed_dimension=settings.target_dim,
            target_embed_dimension=settings.target_dim,
            patchsize=params.aggregation.patchsize,
            featuresampler=patchcore.sampler.IdentitySampler(),
            anomaly_score_num_nn=1,
            nn_method=patchcore.common.FaissNN(False, args.threads),
        )
        model.forward_modules.eval()
        return model

    insp = {"inspection": inspection(False), "inspection-eval": inspection(True)}

    print(
        f"data: {root} ({args.train} train, {args.test} test, {args.size} px); WideResNet50 seed-0 random weights; "
        f"project channels_last={params.extract.channels_last}, precision={params.extract.precision}; {args.threads} thread(s)\n"
    )

    # ---------- (0) weights and buffers ----------
    print("### Weights and buffers (project's network vs each inspection network, layers up to layer3)\n")
    print(
        "| inspection network | max abs diff, parameters | BN running_mean max abs diff | BN running_var max abs diff | BN running_var ratio range (inspection / project) | num_batches_tracked |"
    )
    print("|---|---|---|---|---|---|")
    ps = proj_model.state_dict()
    for name, m in insp.items():
        s = m.backbone.state_dict()
        par = max(float((s[k].float() - ps[k].float()).abs().max()) for k, _ in proj_model.named_parameters())
        rm = max(float((s[k] - ps[k]).abs().max()) for k in ps if k.endswith("running_mean"))
        rv = max(float((s[k] - ps[k]).abs().max()) for k in ps if k.endswith("running_var"))
        ratios = torch.cat([(s[k] / ps[k]).flatten() for k in ps if k.endswith("running_var")])
        nbt = sorted({int(s[k]) for k in s if k.endswith("num_batches_tracked")})
        print(
            f"| {name} | {par:.3g} | {rm:.4g} | {rv:.4g} | {float(ratios.min()):.4g} .. {float(ratios.max()):.4g} | {nbt} |"
        )
    print(
        f"\nproject network training flag: {proj_model.training}; inspection after load: "
        + ", ".join(f"{n}: {m.backbone.training}" for n, m in insp.items())
        + "\n"
    )

    # ---------- images, in inspection's order (test: good then paint) ----------
    def dataset(split):
        return MVTecDataset(str(data_root), category, resize=settings.resize, imagesize=settings.crop, split=split)

    train_ds, test_ds = dataset(DatasetSplit.TRAIN), dataset(DatasetSplit.TEST)
    train_paths = [Path(d[2]) for d in train_ds.data_to_iterate]
    test_paths = [Path(d[2]) for d in test_ds.data_to_iterate]
    labels = np.array([int(d[1] != "good") for d in test_ds.data_to_iterate])

    # (a) inputs
    transform = image_transform(settings)
    x_proj = torch.stack([transform(load_rgb(p)) for p in test_paths])
    x_insp = torch.stack([test_ds[i]["image"] for i in range(len(test_ds))])

    rows = []
    a = rel(x_proj, x_insp)
    rows.append(("(a) input tensors (resize, crop, normalise)", "project vs inspection", *a, ""))

    # (b) layer maps on the same input (inspection's tensors)
    k = min(args.maps_images, len(x_insp))
    with torch.inference_mode():
        proj_maps = proj_features.maps(x_insp[:k].contiguous(memory_format=fmt))
    for name, m in insp.items():
        with torch.no_grad():
            out = m.forward_modules["feature_aggregator"](x_insp[:k])
            maps = [out[layer].clone() for layer in settings.layers]
        for layer, pm, im in zip(settings.layers, proj_maps, maps):
            rows.append(
                (
                    f"(b) {layer} activations (same input)",
                    f"project vs {name}",
                    *rel(pm, im),
                    f"|x| max {float(im.abs().max()):.3g} vs project {float(pm.abs().max()):.3g}",
                )
            )
        if name == "inspection-eval":
            eval_maps = maps
        else:
            as_published = maps
    # the converse: the project's own network after what inspection's load does to it (one
    # train-mode forward of a ones image as far as the last tapped layer), then eval()
    import copy

    warmed = copy.deepcopy(proj_model).to(memory_format=torch.contiguous_format).train()  # inspection's layout
    with torch.no_grad():
        LayerTap(warmed, settings.layers)(torch.ones(1, 3, settings.crop, settings.crop))
    warmed.eval().to(memory_format=fmt)
    with torch.inference_mode():
        warm_maps = LayerTap(warmed, settings.layers)(x_insp[:k].contiguous(memory_format=fmt))
    for layer, wm, im in zip(settings.layers, warm_maps, as_published):
        rows.append(
            (
                f"(b) {layer} activations (same input)",
                "project network after one train-mode ones forward vs inspection",
                *rel(wm, im),
                "reproduces inspection's load",
            )
        )
    del warmed

    # (c) patch features from identical maps: project aggregate vs inspection's _embed tail
    with torch.no_grad():
        pf = aggregate(
            eval_maps,
            settings.target_dim,
            settings.layer_dim,
            params.aggregation.patchsize,
            params.aggregation.border,
            params.aggregation.layer_weighting,
        )
        m = insp["inspection-eval"]
        orig = m.forward_modules["feature_aggregator"].forward
        m.forward_modules["feature_aggregator"].forward = lambda images: dict(zip(settings.layers, eval_maps))
        try:
            ifeat = np.asarray(m._embed(x_insp[:k]))
        finally:
            m.forward_modules["feature_aggregator"].forward = orig
    rows.append(
        (
            "(c) aggregation + projection to 1024 (same maps)",
            "project aggregate vs inspection _embed",
            *rel(pf.reshape(-1, settings.target_dim).numpy(), ifeat),
            "",
        )
    )

    # full features, each side its own way (end to end from files)
    def project_feats(paths):
        with torch.inference_mode():
            return np.concatenate(
                [
                    b.reshape(-1, settings.target_dim).numpy()
                    for b, _ in stream.host_batches(paths, proj_features, cpu, params.extract)
                ]
            )

    def insp_feats(m, ds):
        loader = torch.utils.data.DataLoader(ds, batch_size=params.extract.batch_size, shuffle=False, num_workers=0)
        return np.concatenate([np.asarray(f) for f in m.embed(loader)])

    feats = {"project": (project_feats(train_paths), project_feats(test_paths))}
    for name, m in insp.items():
        feats[name] = (insp_feats(m, train_ds), insp_feats(m, test_ds))
    for name in insp:
        rows.append(
            (
                "(c) patch features end to end (files -> 1024)",
                f"project vs {name}",
                *rel(feats["project"][1], feats[name][1]),
                "",
            )
        )

    # (d) patch scores and image scores, full bank, Eq. 7 off
    per_image = len(feats["project"][1]) // len(test_paths)
    patch_scores = {}
    for name, (tr, te) in feats.items():
        patch_scores[name] = scoring.NearestBank(tr).distances(te)
    for name, m in insp.items():  # inspection's own scorer: faiss squared L2 of its own bank
        m.anomaly_scorer.fit(detection_features=[feats[name][0]])
        insp_scores, _, _ = m.anomaly_scorer.predict([feats[name][1]])
        rows.append(
            (
                "(d) patch scores, inspection's scorer vs sqrt",
                f"{name} FaissNN vs project NearestBank on {name} features",
                *rel(np.sqrt(np.maximum(insp_scores, 0)), patch_scores[name]),
                "",
            )
        )
    img = {n: s.reshape(-1, per_image).max(axis=1) for n, s in patch_scores.items()}
    for name in insp:
        rho = spearmanr(patch_scores["project"], patch_scores[name]).statistic
        rows.append(
            (
                "(d) patch scores, full bank",
                f"project vs {name}",
                *rel(patch_scores["project"], patch_scores[name]),
                f"Spearman {rho:.4f}",
            )
        )
        rho = spearmanr(img["project"], img[name]).statistic
        rows.append(
            (
                "(d) image scores (max), full bank",
                f"project vs {name}",
                *rel(img["project"], img[name]),
                f"Spearman {rho:.4f}",
            )
        )

    print("### Stage by stage (full bank, Eq. 7 off)\n")
    print("| stage | compared | max abs diff | max rel diff | note |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.3g} | {r[3]:.3g} | {r[4]} |")

    # ---------- switches ----------
    def project_coreset(tr):
        n_pick = sampling.coreset_size(len(tr), args.ratio)
        points = sampling.project(
            [tr], sampling.projection_matrix(tr.shape[1], params.coreset.projection_dim, params.coreset.seed)
        )
        picks = sampling.greedy_kcenter(
            points, n_pick, sampling.start_index(len(tr), params.coreset.seed), progress=False
        )
        return tr[np.sort(picks)]

    def inspection_coreset(tr):
        torch.manual_seed(0)
        np.random.seed(0)
        sampler = patchcore.sampler.ApproximateGreedyCoresetSampler(args.ratio, cpu)
        return sampler.run(tr)

    coresets = {
        "full bank": lambda tr: tr,
        f"project k-center {args.ratio:g}": project_coreset,
        f"inspection approx. greedy {args.ratio:g}": inspection_coreset,
    }
    print(f"\n### Image AUROC ({len(test_paths)} test images, {int(labels.sum())} defective)\n")
    print(f"| features | bank | Eq. 7 off (max patch score) | Eq. 7 b={args.neighbours} |")
    print("|---|---|---|---|")
    for name, (tr, te) in feats.items():
        for cname, pick in coresets.items():
            bank = pick(tr)
            nb = scoring.NearestBank(bank)
            dist, nn = nb.search(te, 1)
            cells = []
            for b in (0, args.neighbours):
                b_eff, _ = scoring.reweighting(b, len(bank))
                s = scoring.image_scores(nb, te, dist[:, 0], nn[:, 0], per_image, b_eff)
                cells.append(f"{roc_auc_score(labels, s):.4f}")
            print(f"| {name} | {cname} ({len(bank)} rows) | {cells[0]} | {cells[1]} |", flush=True)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
