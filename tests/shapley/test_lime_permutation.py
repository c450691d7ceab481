"""LIME and feature permutation: independent numpy references of the documented draws
(float64, both frameworks), closed forms on linear models, PyTorch == Keras in float32,
Captum parity given the same coalitions / permutations, seeds and model state."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import crosslens as cl
from reference.numpy_nets import forward

FLAVORS = ("torch", "keras")
TARGET = [1, 3, 0]
SEED = 5


def _grid_mask(cells: int, size: int = 16) -> np.ndarray:
    """(1, 1, H, W) channels-first ids of a cells x cells grid."""
    rows = np.arange(size) * cells // size
    return (rows[:, None] * cells + rows[None, :]).reshape(1, 1, size, size)


def _features(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-feature values (N, M) read back from a per-element map (N, C, H, W)."""
    return np.stack([values[:, 0][:, mask[0, 0] == i][:, 0] for i in np.unique(mask)], axis=1)


def _mask_for(flavor: str, mask: np.ndarray) -> np.ndarray:
    return np.moveaxis(mask, 1, -1) if flavor.startswith("keras") else mask


def _coalitions(seed: int, samples: int, m: int) -> np.ndarray:
    """The documented draw: ``default_rng(seed).random((samples, M)) < 0.5``."""
    return np.random.default_rng(seed).random((samples, m)) < 0.5


def _permutations(seed: int, samples: int, n: int) -> list[np.ndarray]:
    """The documented draw: one non-identity ``rng.permutation(N)`` per repetition."""
    rng, out = np.random.default_rng(seed), []
    for _ in range(samples):
        order = rng.permutation(n)
        while (order == np.arange(n)).all():
            order = rng.permutation(n)
        out.append(order)
    return out


def _reference_lime(f, x, base, mask, coalitions, kernel_width, ridge):
    """LIME written out: every perturbed input built, the cosine distance computed on it,
    and the weighted ridge with an unpenalized intercept solved by its normal equations."""
    ids = np.unique(mask)
    n, m = len(x), len(ids)
    z = coalitions.astype(np.float64)
    design = np.concatenate([np.ones((len(z), 1)), z], axis=1)
    penalty = ridge * np.diag([0.0] + [1.0] * m)
    coef = np.zeros((n, m))
    scores = np.stack([f(np.where(np.isin(mask, ids[row]), x, base)) for row in coalitions])
    for i in range(n):
        flat = x[i].ravel()
        weights = np.empty(len(z))
        for s, row in enumerate(coalitions):
            perturbed = np.where(np.isin(mask[0], ids[row]), x[i], base[i]).ravel()
            cos = flat @ perturbed / (np.linalg.norm(flat) * max(np.linalg.norm(perturbed), 1e-8))
            weights[s] = np.exp(-(1 - cos) ** 2 / (2 * kernel_width ** 2))
        gram = design.T @ (weights[:, None] * design) + penalty
        coef[i] = np.linalg.solve(gram, design.T @ (weights * scores[:, i]))[1:]
    return coef, scores


@pytest.mark.parametrize("flavor", FLAVORS)
def test_lime_equals_an_independent_numpy_fit(zoo, flavor):
    spec, x = zoo.spec("small_cnn"), zoo.x("small_cnn")
    mask, samples, width, ridge = _grid_mask(2), 24, 0.3, 0.5
    base = np.full_like(x, 0.1)
    f = lambda v: forward(spec, v)[np.arange(len(v)), TARGET]  # noqa: E731
    want, _ = _reference_lime(f, x, base, mask, _coalitions(SEED, samples, 4), width, ridge)
    got, exp = zoo.explain(flavor, "small_cnn", x, "lime", target=TARGET, baseline=0.1,
                           samples=samples, kernel_width=width, ridge=ridge, seed=SEED,
                           feature_mask=_mask_for(flavor, mask))
    assert exp.info["features"] == 4 and exp.info["samples"] == samples
    np.testing.assert_allclose(_features(mask, got), want, rtol=1e-8, atol=1e-10)


def test_weighted_ridge_is_scikit_learns_ridge():
    """The fit is sklearn's Ridge(alpha).fit(z, y, sample_weight=w), intercept included."""
    from sklearn.linear_model import Ridge

    from crosslens.methods.lime import weighted_ridge

    rng = np.random.default_rng(0)
    z = rng.random((30, 5)) < 0.5
    y, w = rng.standard_normal((30, 2)), rng.uniform(0.2, 1.0, (30, 2))
    coef, intercept = weighted_ridge(z, y, w, 0.7)
    for i in range(2):
        fit = Ridge(alpha=0.7).fit(z.astype(np.float64), y[:, i], sample_weight=w[:, i])
        np.testing.assert_allclose(coef[i], fit.coef_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(intercept[i], fit.intercept_, rtol=1e-9, atol=1e-12)


def _linear_contributions(fw, x, baseline):
    """Per-feature Σ w·(x − b) of class 2 over the default 4 x 4 grid of the 8 x 8 image
    (N, 16), for the linear twins (x channels-first)."""
    from robustness import models as M
    w, _ = M.linear_weights()
    contribution = w[2].reshape(M.IMAGE) * (x - baseline)
    cells = np.minimum(np.arange(8) * 4 // 8, 3)
    grid = cells[:, None] * 4 + cells[None, :]
    return np.stack([contribution[:, :, grid == i].sum(axis=(1, 2)) for i in range(16)], 1), grid


def _per_element(values, grid, shape):
    return np.broadcast_to(values[:, grid][:, None], shape)


@pytest.mark.parametrize("fw", FLAVORS)
def test_lime_on_a_linear_model_is_the_closed_form(fw):
    """The score is exactly linear in the coalition, so the unpenalized weighted
    regression recovers each feature's Σ w·(x − b), whatever the weights."""
    from robustness import models as M
    from robustness.catalogue import image, to_nchw

    model = M.torch_linear() if fw == "torch" else M.keras_linear()
    x = image(fw)
    exp = cl.explain(model, x, "lime", target=2, baseline=0.5, samples=64, ridge=0.0, seed=1)
    xs = to_nchw(fw, x).astype(np.float64)
    values, grid = _linear_contributions(fw, xs, 0.5)
    np.testing.assert_allclose(to_nchw(fw, exp.numpy()), _per_element(values, grid, xs.shape),
                               rtol=1e-4, atol=1e-5)
    # a ridge penalty shrinks the coefficients (their norm) towards 0
    shrunk = cl.explain(model, x, "lime", target=2, baseline=0.5, samples=64, ridge=5.0,
                        seed=1)
    norm = lambda v: np.linalg.norm(v.reshape(len(v), -1), axis=1)  # noqa: E731
    assert (norm(shrunk.numpy()) < 0.95 * norm(exp.numpy())).all()


@pytest.mark.parametrize("fw", FLAVORS)
def test_feature_permutation_on_a_linear_model_is_the_closed_form(fw):
    """A feature's drop is Σ_F w·(x_i − x_π(i)), averaged over the documented draws."""
    from robustness import models as M
    from robustness.catalogue import image, to_nchw

    model = M.torch_linear() if fw == "torch" else M.keras_linear()
    x = image(fw, n=3)
    exp = cl.explain(model, x, "feature_permutation", target=2, samples=3, seed=SEED)
    drawn = _permutations(SEED, 3, 3)
    assert exp.info["permutations"] == [list(map(int, p)) for p in drawn]
    xs = to_nchw(fw, x).astype(np.float64)
    values = np.mean([_linear_contributions(fw, xs, xs[p])[0] for p in drawn], axis=0)
    grid = _linear_contributions(fw, xs, 0.0)[1]
    np.testing.assert_allclose(to_nchw(fw, exp.numpy()), _per_element(values, grid, xs.shape),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_feature_permutation_equals_the_numpy_reference(zoo, flavor):
    spec, x = zoo.spec("small_cnn"), zoo.x("small_cnn")
    mask = _grid_mask(2)
    f = lambda v: forward(spec, v)[np.arange(len(v)), TARGET]  # noqa: E731
    want = np.zeros((3, 4))
    for order in _permutations(SEED, 2, 3):
        for j in range(4):
            want[:, j] += f(x) - f(np.where(mask == j, x[order], x))
    got, _ = zoo.explain(flavor, "small_cnn", x, "feature_permutation", target=TARGET,
                         samples=2, seed=SEED, feature_mask=_mask_for(flavor, mask))
    np.testing.assert_allclose(_features(mask, got), want / 2, rtol=1e-8, atol=1e-10)


def test_feature_permutation_needs_a_batch(zoo):
    from robustness.fingerprint import assert_unchanged, fingerprint

    model = zoo.build("torch", "small_cnn")
    before = fingerprint(model)
    with pytest.raises(cl.InputError, match="at least 2 samples.*feature_ablation"):
        cl.explain(model, zoo.x("small_cnn")[:1], "feature_permutation", target=1)
    with pytest.raises(cl.OptionError, match="samples >= 1"):
        cl.explain(model, zoo.x("small_cnn"), "feature_permutation", target=1, samples=0)
    assert_unchanged(model, before)


@pytest.mark.parametrize("method,options", [
    ("lime", {"samples": 20, "baseline": 0.2}),
    ("feature_permutation", {"samples": 2}),
])
def test_pytorch_equals_keras_in_float32(zoo, method, options):
    x = zoo.x("small_cnn").astype(np.float32)
    got = {flavor: zoo.explain(flavor, "small_cnn", x, method, target=TARGET, seed=SEED,
                               dtype="float32", **options)[0] for flavor in FLAVORS}
    zoo.assert_close(got["keras"], got["torch"], 1e-5, f"{method}: keras vs torch")


@pytest.mark.parametrize("method", ["lime", "feature_permutation"])
def test_seeded_reproducible_and_the_model_is_unchanged(zoo, method):
    from robustness.fingerprint import assert_unchanged, fingerprint

    model, x = zoo.build("torch", "small_cnn"), zoo.x("small_cnn")
    before = fingerprint(model)
    run = lambda seed: cl.explain(model, x, method, target=TARGET, samples=6,  # noqa: E731
                                  seed=seed).numpy()
    first, again, other = run(3), run(3), run(4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert_unchanged(model, before)


def test_captum_feature_permutation_with_our_permutation(zoo):
    """Captum's FeaturePermutation, given a perm_func applying our drawn permutation,
    is ours (float64, one permutation)."""
    import torch

    model, x = zoo.model("torch", "small_cnn"), zoo.x("small_cnn")
    mask = _grid_mask(4)
    ours = cl.explain(model, x, "feature_permutation", target=TARGET, seed=SEED,
                      feature_mask=mask)
    order = torch.as_tensor(ours.info["permutations"][0])

    def perm_func(batch, feature):
        return batch[order] * feature + batch * ~feature

    theirs = cl.explain(model, x, "feature_permutation", implementation="captum",
                        target=TARGET, feature_mask=mask, perm_func=perm_func)
    np.testing.assert_allclose(theirs.numpy(), ours.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(cl.OptionError, match="one permutation per feature"):
        cl.explain(model, x, "feature_permutation", implementation="captum", target=TARGET,
                   samples=2)


def test_captum_lime_with_our_coalitions(zoo):
    """Captum's Lime, fed our coalitions through a perturb_func and given our kernel width
    and ridge (mapped to its cosine kernel and a scikit-learn Ridge), is ours up to its
    float32 fit."""
    import torch

    model, x = zoo.model("torch", "small_cnn"), zoo.x("small_cnn")
    mask, samples = _grid_mask(2), 30
    options = dict(target=TARGET, feature_mask=mask, baseline=0.1, samples=samples,
                   kernel_width=0.4, ridge=0.3)
    ours = cl.explain(model, x, "lime", seed=SEED, **options).numpy()
    coalitions = torch.as_tensor(_coalitions(SEED, samples, 4)).long()

    def perturb_func(original, **kwargs):  # a generator: restarted for every sample
        yield from (row[None] for row in coalitions)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum's note on one surrogate per sample
        theirs = cl.explain(model, x, "lime", implementation="captum",
                            perturb_func=perturb_func, **options).numpy()
    zoo.assert_close(theirs, ours, 1e-6, "captum Lime vs ours")


def test_lime_on_token_ids_uses_the_coalition_distance():
    """Integer inputs: the distance is the cosine distance of the coalition to the full
    one, and a model linear in the embeddings gets each token's closed form."""
    import torch

    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 3)
    model = torch.nn.Sequential(emb, torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    exp = cl.explain(model, ids, "lime", target=1, baseline=0, samples=24, ridge=0.0, seed=0)
    with torch.no_grad():
        w = model[2].weight[1].reshape(4, 3)
        want = ((emb.weight[ids[0]] - emb.weight[0]) * w).sum(dim=1)
    np.testing.assert_allclose(exp.numpy()[0], want.numpy(), rtol=1e-5, atol=1e-6)


def test_lime_option_errors_name_the_fix(zoo):
    model, x = zoo.model("torch", "small_cnn"), zoo.x("small_cnn")
    for options, words in (({"samples": 0}, "samples >= 1"),
                           ({"kernel_width": 0.0}, "kernel_width must be > 0"),
                           ({"ridge": -1.0}, "ridge is an L2 penalty"),
                           ({"kernel_width": 1e-4}, "too narrow.*use kernel_width >=")):
        with pytest.raises(cl.OptionError, match=words):
            cl.explain(model, x, "lime", target=TARGET, **{"samples": 5, "seed": 0, **options})
