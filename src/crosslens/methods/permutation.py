"""Feature permutation: the score drop when a feature's values are shuffled across the
batch (permutation feature importance; Captum ``FeaturePermutation``).

Each feature of an integer ``feature_mask`` (as for
:func:`~crosslens.methods.shapley.kernel_shap`: default a 4 x 4 grid over an image's
spatial axes, or every element of a non-image input) is in turn given the values of
other samples of the batch: sample ``i`` gets sample ``π(i)``'s values on that feature,
the rest of it unchanged. Its elements get ``f(x) - f(x with the feature permuted)``.

Each of the ``samples`` repetitions draws one permutation ``π`` of the batch from
``default_rng(seed)`` (``rng.permutation(N)``, drawn again while it is the identity, as
Captum does) and applies it to every feature; the result is the mean over the
repetitions. The permutations are reported in ``info["permutations"]``. The batch is
the data the values are drawn from, so it needs at least two samples.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InputError, OptionError
from ..core.registry import register
from .base import Context, MethodResult
from .scoring import forward_scores
from .shapley import _Mask


@register("feature_permutation", needs=("forward",), family="perturbation",
          batch_coupling="samples",
          aliases=("permutation", "permutation_importance"),
          summary="Score drop when each mask feature takes another sample's values "
                  "(permuted across the batch; Captum FeaturePermutation)",
          reference="Breiman 2001; Fisher et al. 2019")
def feature_permutation(ctx: Context, *, feature_mask: Any = None,
                        samples: int = 1) -> MethodResult:
    """Permutation importance of the features of ``feature_mask`` (see the module
    docstring).

    Parameters
    ----------
    feature_mask
        Integer feature ids broadcastable to the input (as for ``feature_ablation``);
        default a 4 x 4 grid over an image, or one feature per element.
    samples
        Number of permutations of the batch (seeded) the drops are averaged over.
    """
    if samples < 1:
        raise OptionError(f"feature_permutation needs samples >= 1 permutations; got "
                          f"{samples}")
    if ctx.n < 2:
        raise InputError(f"feature_permutation shuffles each feature's values across the "
                         f"batch and needs at least 2 samples; got a batch of {ctx.n}. Pass "
                         "several inputs (e.g. a batch of validation samples), or use "
                         "feature_ablation to explain one input")
    setup = _Mask(ctx, feature_mask, "feature_permutation")
    m, n, rng = setup.count, ctx.n, ctx.rng()
    f_x = forward_scores(ctx, ctx.x, setup.target)
    # coalition j keeps every feature but the j-th, which takes the permuted values
    coalitions = ~np.eye(m, dtype=bool)
    drops = np.zeros((n, m))
    drawn = []
    for r in range(samples):
        order = rng.permutation(n)
        while (order == np.arange(n)).all():
            order = rng.permutation(n)
        drawn.append([int(i) for i in order])
        permuted = ctx.ops.take_rows(ctx.x, order)
        desc = "permuted features" if samples == 1 else f"permuted features ({r + 1}/{samples})"
        drops += (f_x[None, :] - setup.replaced_scores(coalitions, permuted, desc)).T
    info = {"features": m, "samples": samples, "permutations": drawn}
    return MethodResult(setup.broadcast(drops / samples), info=info)
