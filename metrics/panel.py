"""The built-in metric panel: wires the metric functions to an EvalContext.

One entry per metric; the math lives in the modules named in each function.
Settings read from ``ctx.settings`` (suite ``[settings]``), with defaults:
``k_prc`` 3, ``k_dc`` 5, ``kid_subsets`` 100, ``kid_subset_size`` 1000,
``is_splits`` 10, ``bootstrap`` 0 (off; else resamples for 95% intervals of FID
and the four PRDC numbers), ``copy_ratio`` 1/3, ``prdc_equal_n`` true (PRDC
against a random subset of the reference with as many samples as the fakes). Every value's ``settings``
states its protocol (N, k, extractor and weights hash, subsets...).
"""

from __future__ import annotations

import math
import warnings

import torch

from genbench.protocol import ExactLikelihood, LikelihoodBound

from .context import EvalContext
from .fid import SampleSizeWarning, fid_from_features, kid_from_features
from .inception_score import inception_score
from .latency import measure_latency
from .likelihood import likelihood_summary
from .memorization import memorization as memorization_stats
from .mode_collapse import class_histogram_kl, mixture_mode_stats, stacked_mode_stats
from .prdc import prdc as prdc_stats
from .registry import MetricValue, Output, register_metric
from .uncertainty import bootstrap_fid, bootstrap_mean_interval


def _has_likelihood(ctx: EvalContext) -> bool:
    """The generator has ``log_prob`` or ``elbo`` and does not say (``likelihood_na``, a reason) that its number is no likelihood of the data."""
    return isinstance(ctx.generator, (ExactLikelihood, LikelihoodBound)) and not getattr(ctx.generator, "likelihood_na", None)


_BOOT_FID = {"interval": "bootstrap 95% normal: FID ± 1.96 std of FID over resamples of both sets, clipped at 0"}
_BOOT_PRDC = {"interval": "bootstrap 95% percentile of per-sample indicators, k-NN balls fixed"}


def _bootstrap(ctx: EvalContext) -> int:
    b = int(ctx.setting("bootstrap", 0) or 0)
    if b < 0:
        raise ValueError(f"setting bootstrap must be >= 0 (0 = off), got {b}")
    return b


def _dist_settings(ctx: EvalContext, real, fake) -> dict:
    return {
        **ctx.extractor.settings(),
        "n_real": int(len(real)),
        "n_fake": int(len(fake)),
        "reference": ctx.setting("reference", "train") + " split",
    }


@register_metric("fid", [Output("fid", "FID", "min", per_extractor=True)])
def fid(ctx: EvalContext) -> dict[str, MetricValue]:
    """Fréchet distance of extractor features, fake vs the reference split (train by default) (metrics/fid.py)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SampleSizeWarning)
        res = fid_from_features(ctx.features("real"), ctx.features("fake"))
    settings = {**ctx.extractor.settings(), "n_real": res.n1, "n_fake": res.n2, "reference": ctx.setting("reference", "train") + " split"}
    extra = {"max_imag": res.max_imag, "min_eig": res.min_eig, "n_below_dim": res.n_below_dim}
    if caught:
        extra["warning"] = str(caught[0].message)
    interval = None
    b = _bootstrap(ctx)
    if b:
        interval = bootstrap_fid(ctx.features("real"), ctx.features("fake"), b, ctx.seed, estimate=res.value)
        settings.update(_BOOT_FID, bootstrap=b)
    return {"fid": MetricValue(res.value, interval, settings, extra)}


@register_metric("nll", [Output("nll", "NLL", "min")], applies=lambda ctx: _has_likelihood(ctx) and ctx.test is not None)
def nll(ctx: EvalContext) -> dict[str, MetricValue]:
    """Test-split NLL: nats/point for 2-D data, bits/dim for images (metrics/likelihood.py)."""
    info = ctx.data_info
    res = likelihood_summary(ctx.generator, ctx.test, is_image=info.kind == "image", dim=info.dim, seed=ctx.seed)
    se = res["se"]
    interval = (res["value"] - 1.96 * se, res["value"] + 1.96 * se) if math.isfinite(se) else None
    settings = {"unit": res["unit"], "kind": res["kind"], "n": int(len(ctx.test)), "split": "test", "rng": f"seeded with job seed {ctx.seed}",
                "interval": "mean ± 1.96 standard errors over test examples (95%)"}
    return {"nll": MetricValue(res["value"], interval, settings, unit=res["unit"])}


def _latency(ctx: EvalContext, bs: int) -> MetricValue:
    g = ctx.generator
    gen = torch.Generator().manual_seed(ctx.seed)
    warmup = int(ctx.setting("latency_warmup", 1))
    lat = measure_latency(
        lambda: g.sample(bs, steps=ctx.steps, generator=gen),
        batch_size=bs,
        warmup=warmup,
        repeats=int(ctx.setting("latency_repeats", 5)),
        device=ctx.device,
        max_seconds=ctx.setting("latency_max_seconds", 10.0),
    )
    iqr = (lat.per_sample_ms - lat.per_sample_iqr_ms / 2, lat.per_sample_ms + lat.per_sample_iqr_ms / 2)
    settings = {
        "batch_size": bs,
        "repeats": lat.repeats,
        "warmup": warmup,
        "device": str(ctx.device),
        "steps": ctx.steps,
        "statistic": "median, IQR",
    }
    return MetricValue(lat.per_sample_ms, iqr, settings, {"iqr_ms": lat.per_sample_iqr_ms, "median_batch_s": lat.median_s})


@register_metric(
    "latency",
    [Output("latency_ms", "ms/sample", "min", unit="ms"), Output("ms_per_nfe", "ms/NFE", "min", unit="ms")],
    applies=lambda ctx: ctx.generator is not None,
    phase="timing",
)
def latency(ctx: EvalContext) -> dict[str, MetricValue]:
    """Sampling wall time per sample at batch ``latency_batch`` (default 64), median (IQR) after warm-up
    (metrics/latency.py), and that divided by the network evaluations per sample when the generator reports them
    (``last_nfe``)."""
    lat = _latency(ctx, int(ctx.setting("latency_batch", 64)))
    out = {"latency_ms": lat}
    nfe = getattr(ctx.generator, "last_nfe", None)
    if isinstance(nfe, int) and nfe > 0:
        out["ms_per_nfe"] = MetricValue(lat.value / nfe, None, {**lat.settings, "nfe": nfe})
    return out


@register_metric(
    "latency_b1", [Output("latency_b1_ms", "ms/sample@b1", "min", unit="ms")], applies=lambda ctx: ctx.generator is not None, phase="timing"
)
def latency_b1(ctx: EvalContext) -> dict[str, MetricValue]:
    """Sampling wall time per sample at batch 1, median (IQR) after warm-up (metrics/latency.py)."""
    return {"latency_b1_ms": _latency(ctx, 1)}


# ------------------------------------------------------------------------------ distribution metrics
@register_metric("kid", [Output("kid", "KID", "zero", per_extractor=True)])
def kid(ctx: EvalContext) -> dict[str, MetricValue]:
    """Kernel Inception Distance, polynomial kernel degree 3, mean ± std over subsets (metrics/fid.py)."""
    real, fake = ctx.features("real"), ctx.features("fake")
    r = kid_from_features(real, fake, int(ctx.setting("kid_subsets", 100)), int(ctx.setting("kid_subset_size", 1000)), seed=ctx.seed)
    settings = {
        **_dist_settings(ctx, real, fake),
        "subsets": r.subsets,
        "subset_size": r.subset_size,
        "kernel": f"(x.y/D + {r.coef0:g})^{r.degree}",
        "estimator": "unbiased MMD^2",
        "scale": "raw MMD^2, not x1000 as papers often print",
        "interval": "mean ± std over subsets",
    }
    return {"kid": MetricValue(r.value, (r.value - r.std, r.value + r.std), settings, {"std": r.std})}


def _single_classifier(ctx: EvalContext) -> int:
    return ctx.extractor.classifier_classes(tuple(ctx.data_info.shape)) if ctx.data_info.kind == "image" else 0


@register_metric("is", [Output("is", "IS", "max", per_extractor=True)], applies=lambda ctx: _single_classifier(ctx) > 0)
def inception(ctx: EvalContext) -> dict[str, MetricValue]:
    """Inception Score from the extractor's logits, mean ± std over splits (metrics/inception_score.py)."""
    logits = ctx.logits("fake")
    r = inception_score(logits, int(ctx.setting("is_splits", 10)), seed=ctx.seed)
    settings = {**ctx.extractor.settings(), "n_fake": r.n, "splits": r.splits, "classes": r.classes, "interval": "mean ± std over splits"}
    return {"is": MetricValue(r.value, (r.value - r.std, r.value + r.std), settings, {"std": r.std})}


@register_metric(
    "prdc",
    [
        Output("precision", "Precision", "max", per_extractor=True),
        Output("recall", "Recall", "max", per_extractor=True),
        Output("density", "Density", "max", per_extractor=True),
        Output("coverage", "Coverage", "max", per_extractor=True),
    ],
)
def prdc(ctx: EvalContext) -> dict[str, MetricValue]:
    """Precision/recall (k=3) and density/coverage (k=5) from one distance pass (metrics/prdc.py)."""
    real, fake = ctx.features("real"), ctx.features("fake")
    k_prc, k_dc = int(ctx.setting("k_prc", 3)), int(ctx.setting("k_dc", 5))
    n_available = len(real)
    equal_n = bool(ctx.setting("prdc_equal_n", True))
    if equal_n and len(real) > len(fake):
        # k-NN manifolds depend on N: recall and coverage of M real balls by N << M fakes are biased
        # down, so (as in both papers) the reference is a random subset of the same size as the samples
        g = torch.Generator().manual_seed(ctx.seed)
        real = real[torch.randperm(len(real), generator=g)[: len(fake)]]
    r = prdc_stats(real, fake, k_prc=k_prc, k_dc=k_dc)
    base = {**_dist_settings(ctx, real, fake), "n_real_available": n_available}
    if len(real) < n_available:
        base["real_subset"] = f"random {len(real)} of {n_available} (seed {ctx.seed}); setting prdc_equal_n"
    pr = {**base, "k": k_prc, "radius_test": "d <= NND_k (torch-fidelity)", "method": "Kynkaanniemi et al. 2019"}
    dc = {**base, "k": k_dc, "radius_test": "d < NND_k of real (Naeem et al.)", "method": "Naeem et al. 2020"}
    b = _bootstrap(ctx)
    out = {}
    for name, ind, st in (
        ("precision", r.precision_ind, pr),
        ("recall", r.recall_ind, pr),
        ("density", r.density_ind, dc),
        ("coverage", r.coverage_ind, dc),
    ):
        interval = bootstrap_mean_interval(ind, b, ctx.seed) if b else None
        out[name] = MetricValue(getattr(r, name), interval, {**st, **(dict(_BOOT_PRDC, bootstrap=b) if b else {})})
    return out


# ------------------------------------------------------------------------------ classes
def _labelled(ctx: EvalContext) -> bool:
    n = _single_classifier(ctx)
    has_labels = ctx.train_labels is not None or ctx.real_labels is not None
    return n > 0 and n == ctx.data_info.num_classes and has_labels


@register_metric("class_kl", [Output("class_kl", "class KL", "min", per_extractor=True, unit="nats")], applies=_labelled)
def class_kl(ctx: EvalContext) -> dict[str, MetricValue]:
    """KL(data class frequencies || classifier's class histogram of the samples), nats (metrics/mode_collapse.py)."""
    data_labels, which = (ctx.train_labels, "train") if ctx.train_labels is not None else (ctx.real_labels, "reference")
    pred = ctx.logits("fake").argmax(1)
    c = ctx.data_info.num_classes
    v = class_histogram_kl(data_labels, pred, c, alpha=0.5)
    settings = {
        **ctx.extractor.settings(),
        "n_fake": int(len(pred)),
        "classes": c,
        "data_frequencies": f"{which} split labels",
        "definition": "KL(p_data || q_samples), q_c = (n_c + 0.5) / (N + 0.5 C), nats",
    }
    return {"class_kl": MetricValue(v, None, settings)}


@register_metric(
    "class_acc",
    [Output("class_acc", "class acc", "max", per_extractor=True)],
    applies=lambda ctx: ctx.fake_labels is not None and _labelled(ctx),
)
def class_acc(ctx: EvalContext) -> dict[str, MetricValue]:
    """Fraction of samples the classifier assigns the class they were conditioned on."""
    pred = ctx.logits("fake").argmax(1)
    lab = torch.as_tensor(ctx.fake_labels).long().cpu()
    if lab.shape != pred.shape:
        raise ValueError(f"class_acc: {len(lab)} conditioning labels for {len(pred)} samples")
    v = float((pred == lab).double().mean())
    acc = getattr(ctx.extractor, "test_accuracy", None)
    settings = {**ctx.extractor.settings(), "n_fake": int(len(pred)), "classifier_test_accuracy": acc}
    return {"class_acc": MetricValue(v, None, settings)}


# ------------------------------------------------------------------------------ memorization
def _test_source(ctx: EvalContext) -> str | None:
    if ctx.test is not None:
        return "test"
    if ctx.setting("reference", "train") == "test":
        return "real"
    return None


def _train_source(ctx: EvalContext) -> str | None:
    if ctx.train is None:
        return None
    return "real" if ctx.real is ctx.train else "train"


@register_metric(
    "memorization",
    [Output("copy_rate", "copy rate", "min", per_extractor=True), Output("dist_ratio", "NN dist ratio", "one", per_extractor=True)],
    applies=lambda ctx: _train_source(ctx) is not None and _test_source(ctx) is not None,
)
def memorization(ctx: EvalContext) -> dict[str, MetricValue]:
    """Copy rate (d1 < ratio d2 to the train set) and NN-distance ratio to the test split's (metrics/memorization.py)."""
    ratio = float(ctx.setting("copy_ratio", 1 / 3))
    train, test, fake = ctx.features(_train_source(ctx)), ctx.features(_test_source(ctx)), ctx.features("fake")
    r = memorization_stats(fake, train, test, ratio=ratio)
    base = {**ctx.extractor.settings(), "n_fake": r.n_fake, "n_train": r.n_train, "n_test": r.n_test, "n_real": r.n_train}
    cr = {**base, "copy_ratio": ratio, "rule": f"d1 < {ratio:.4g} d2 (or d1 = 0) to the train split"}
    dr = {**base, "definition": "mean NN distance fake->train / mean NN distance test->train"}
    extra = {"copy_rate_test": r.copy_rate_test, "mean_nn_fake": r.mean_nn_fake, "mean_nn_test": r.mean_nn_test}
    return {"copy_rate": MetricValue(r.copy_rate, None, cr, extra), "dist_ratio": MetricValue(r.dist_ratio, None, dr, extra)}


# ------------------------------------------------------------------------------ mode collapse
def _mixture(ctx: EvalContext) -> bool:
    return ctx.data_info.kind == "points" and getattr(ctx.data_info, "modes", None) is not None


def _stacked(ctx: EvalContext) -> bool:
    """Images whose channels each carry a class (DataInfo.channel_classes), with a per-channel classifier."""
    return bool(getattr(ctx.data_info, "channel_classes", False)) and callable(getattr(ctx.extractor, "channel_logits", None))


@register_metric(
    "mode_collapse",
    [
        Output("modes", "modes", "max"),
        Output("hq_pct", "HQ %", "max", unit="%"),
        Output("reverse_kl", "reverse KL", "min", unit="nats"),
        Output("kl_uniform", "KL to uniform", "min", unit="nats"),
    ],
    applies=lambda ctx: _mixture(ctx) or _stacked(ctx),
)
def mode_collapse(ctx: EvalContext) -> dict[str, MetricValue]:
    """Modes captured and KL over modes: 2-D mixtures (PacGAN, 2500 samples) or stacked digits (1000 modes, 26,000 samples)."""
    if _mixture(ctx):
        info = ctx.data_info
        r = mixture_mode_stats(ctx.fake, info.modes, info.mode_std, hq_sigmas=3.0)
        base = {
            "n_fake": r.n,
            "n_modes": r.n_modes,
            "mode_std": info.mode_std,
            "protocol": "PacGAN/VEEGAN, 2500 samples",
            "protocol_n_ok": r.n == 2500,
        }
        extra = {"counts": r.counts, "no_hq": r.no_hq}
        return {
            "modes": MetricValue(r.modes, None, {**base, "rule": "modes that are the nearest mode of >= 1 high-quality sample"}, extra),
            "hq_pct": MetricValue(r.hq_pct, None, {**base, "rule": "% samples within 3 std of their nearest mode"}, extra),
            "reverse_kl": MetricValue(
                r.reverse_kl,
                None,
                {
                    **base,
                    "definition": "KL(p_HQ || uniform), p_HQ = nearest-mode histogram of HQ samples; 0 log 0 = 0; log M if no HQ sample",
                },
                extra,
            ),
        }
    ext = ctx.extractor
    r = stacked_mode_stats(ext.channel_logits(ctx.fake))
    base = {
        "n_fake": r.n,
        "n_modes": r.n_modes,
        "classifier": f"{ext.name} per channel",
        "weights_hash": ext.weights_hash,
        "protocol": "stacked digits, 26,000 samples",
        "protocol_n_ok": r.n == 26000,
    }
    return {
        "modes": MetricValue(r.modes, None, {**base, "rule": "distinct modes with >= 1 sample"}),
        "kl_uniform": MetricValue(r.kl_uniform, None, {**base, "definition": "KL(mode histogram || uniform over 1000), 0 log 0 = 0, nats"}),
    }
