"""Decision thresholds and what they mean on a test set (pure array code).

Image threshold: a quantile of held-out good images' scores (no labels; every quantile here is
linear between order statistics, Hyndman and Fan's type 7, numpy's default), the F1-maximising
threshold on labelled test images (anomalib's adaptive threshold), or a fixed value. An
image whose score is at or above the threshold is anomalous.
"""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95
FEW_SCORES = 20  # below this a quantile threshold is in effect one of the few largest scores


def _count(n: float) -> str:
    return f"{n:.3g}" if n > 10**9 else str(n)


def quantile_interval(
    scores: np.ndarray, q: float, level: float = LEVEL
) -> tuple[float | None, float | None, str | None]:
    """A distribution-free interval for the q-quantile of the distribution ``scores`` were drawn from.

    The order statistics X_(l) <= X_(u) with P(Bin(n, q) >= l) >= 1 - a/2 and P(Bin(n, q) <= u - 1)
    >= 1 - a/2 (a = 1 - level), so the interval covers the true quantile with at least ``level``
    probability whatever the distribution. An end that no order statistic reaches is None, and the
    third value says why (e.g. the 0.99 quantile needs 368 scores before it can be bounded above).
    """
    x = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(x)
    tail = (1.0 - level) / 2
    if n == 0:
        return None, None, "no held-out scores"
    j = np.arange(1, n + 1)
    from scipy.stats import binom  # here, not at import: predict needs none of scipy.stats (most of a second)

    lower_ok = np.flatnonzero(binom.sf(j - 1, n, q) >= 1 - tail)  # P(Bin >= j)
    upper_ok = np.flatnonzero(binom.cdf(j - 1, n, q) >= 1 - tail)  # P(Bin <= j - 1)
    lo = float(x[lower_ok[-1]]) if len(lower_ok) else None
    hi = float(x[upper_ok[0]]) if len(upper_ok) else None
    notes = []
    if hi is None:
        needed = math.ceil(math.log(tail) / math.log(q)) if q < 1 else math.inf
        notes.append(
            f"no upper end: {n} scores cannot bound the {q:g} quantile from above at {level:.0%} (that needs {_count(needed)})"
        )
    if lo is None:
        needed = math.ceil(math.log(tail) / math.log1p(-q)) if q > 0 else math.inf  # log1p: 1 - 1e-300 is 1.0
        notes.append(
            f"no lower end: {n} scores cannot bound the {q:g} quantile from below at {level:.0%} (that needs {_count(needed)})"
        )
    return lo, hi, "; ".join(notes) or None


def f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest F1 on labelled images (ties: the lowest such threshold), and that F1.

    As anomalib's F1AdaptiveThreshold: the precision-recall curve's thresholds are the distinct
    scores; F1 = 2PR / (P + R).
    """
    from sklearn.metrics import precision_recall_curve

    precision, recall, candidates = precision_recall_curve(
        np.asarray(labels, dtype=np.int8), np.asarray(scores, dtype=np.float64)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)[:-1]
    best = int(np.argmax(f1))
    return float(candidates[best]), float(f1[best])


def rate_interval(hits: int, n: int, level: float = LEVEL) -> list[float]:
    """Clopper-Pearson (exact binomial) interval of a rate observed as hits out of n."""
    from scipy.stats import binomtest

    ci = binomtest(hits, n).proportion_ci(confidence_level=level, method="exact")
    return [round(float(ci.low), 6), round(float(ci.high), 6)]


def at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[dict, dict]:
    """Precision, recall, F1 and the false-reject rate of good images at ``threshold``, and a reason for each null."""
    labels = np.asarray(labels)
    flagged = np.asarray(scores) >= threshold
    good, bad = labels == 0, labels == 1
    tp, fp = int((flagged & bad).sum()), int((flagged & good).sum())
    out: dict = {"good_test_images": int(good.sum()), "defective_test_images": int(bad.sum())}
    reasons: dict[str, str] = {}
    if bad.any():
        recall = tp / int(bad.sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        out["recall"] = round(recall, 6)
        out["precision"] = round(precision, 6)
        out["f1"] = round(2 * precision * recall / (precision + recall), 6) if precision + recall else 0.0
    else:
        for key in ("recall", "precision", "f1"):
            out[key] = None
            reasons[key] = "no defective test images: recall, precision and F1 need some"
    if good.any():
        out["false_reject_rate"] = round(fp / int(good.sum()), 6)
        out["false_reject_ci95"] = rate_interval(fp, int(good.sum()))
    else:
        out["false_reject_rate"] = out["false_reject_ci95"] = None
        reasons["false_reject_rate"] = reasons["false_reject_ci95"] = (
            "no good test images: the false-reject rate needs some"
        )
    return out, reasons


def choose(
    method: str,
    quantile: float,
    value: float | None,
    held: np.ndarray,
    held_from: str,
    labels: np.ndarray,
    scores: np.ndarray,
):
    """The image threshold by ``method`` as a record (how it was chosen, from how many scores) and a
    reason for each null in it; (None, reasons) when a label-free threshold has no held-out score.

    ``held``: the held-out good images' scores (``held_from`` says how they were held out);
    ``labels``/``scores``: the test set's, which only f1_max looks at. Raises ValueError when
    f1_max has no defective image to look at.
    """
    if method == "fixed":
        assert value is not None  # the settings require it
        return {
            "method": "fixed",
            "threshold": round(value, 6),
            "chosen_on": "params.yaml evaluate.threshold.value",
            "scores_from": 0,
        }, {}
    if method == "f1_max":
        if not (np.asarray(labels) == 1).any():
            raise ValueError("f1_max needs defective test images, and this category has none")
        best, _ = f1_max(labels, scores)
        chosen = (
            "the labelled test set (F1-maximising, as anomalib's adaptive threshold): its test metrics are optimistic"
        )
        return {
            "method": "f1_max",
            "threshold": round(best, 6),
            "chosen_on": chosen,
            "scores_from": int(len(labels)),
        }, {}
    if not len(held):
        return None, {
            "threshold_metrics": "no held-out good images (coreset.holdout_folds and holdout_fraction are 0, or one training image): no label-free threshold"
        }
    return _holdout_quantile(held, held_from, quantile)


def _holdout_quantile(held: np.ndarray, held_from: str, quantile: float):
    """The label-free threshold: the ``quantile`` of the held-out good images' scores, with its 95% interval."""
    lo, hi, note = quantile_interval(held, quantile)
    record = {
        "method": "holdout_quantile",
        "threshold": round(float(np.quantile(held, quantile)), 6),
        "chosen_on": (
            f"{len(held)} good images of the data set's validation split"
            if held_from == "validation"
            else f"{len(held)} good training images scored out of the bank ({held_from})"
        ),
        "scores_from": int(len(held)),
        "quantile": quantile,
        "threshold_ci95": [None if lo is None else round(lo, 6), None if hi is None else round(hi, 6)],
    }
    if len(held) < FEW_SCORES:
        record["warning"] = (
            f"the threshold comes from only {len(held)} scores (fewer than {FEW_SCORES}): the {quantile:g} quantile "
            "is in effect one of the few largest; "
            + (
                "the validation split is small"
                if held_from == "validation"
                else "use coreset.holdout_folds to score every training image"
            )
        )
    return record, ({"threshold_metrics.threshold_ci95": note} if note else {})


def pixel_threshold(map_max: np.ndarray, quantile: float, connectivity: int):
    """The label-free pixel threshold: the ``quantile`` of held-out good images' highest map values, so that
    share of good images shows no defect region; (None, reason) without held-out images."""
    if not len(map_max):
        return None, {"pixel_threshold": "no held-out good images: no label-free pixel threshold, so no regions"}
    return {
        "threshold": round(float(np.quantile(map_max, quantile)), 6),
        "quantile": quantile,
        "of": "the highest anomaly-map value of each held-out good image",
        "scores_from": int(len(map_max)),
        "connectivity": connectivity,
    }, {}


def mean_3std_threshold(pixels: dict, images: int, connectivity: int) -> dict:
    """MVTec AD 2's suggested pixel threshold: the mean + 3 std of every pixel of the validation images' maps."""
    return {
        "threshold": round(pixels["mean"] + 3 * pixels["std"], 6),
        "method": "validation_mean_3std",
        "of": "every pixel of the validation images' anomaly maps at their own size: mean + 3 std (MVTec AD 2's rule)",
        "scores_from": images,
        "connectivity": connectivity,
    }
