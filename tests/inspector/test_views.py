"""The numbers behind the views, against numpy directly: NMF, PCA, column orders, the
activating region's box, and the canonical keys of the export."""
from __future__ import annotations

import numpy as np
import pytest

from crosslens.core.errors import OptionError
from crosslens.inspector.endpoints import canonical_key
from crosslens.inspector.nmf import nmf
from crosslens.inspector.views import column_order, pca, region_box, subset_mean


def test_nmf_reconstructs_low_rank_data_and_is_deterministic():
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 1, (60, 3)) @ rng.uniform(0, 1, (3, 20))
    w, h = nmf(v, 3, seed=1, iterations=2000, tol=0)
    assert (w >= 0).all() and (h >= 0).all() and w.shape == (60, 3) and h.shape == (3, 20)
    assert np.linalg.norm(v - w @ h) / np.linalg.norm(v) < 0.02
    w2, h2 = nmf(v, 3, seed=1, iterations=2000, tol=0)
    np.testing.assert_array_equal(w, w2)
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_allclose(h.max(axis=1), 1.0)  # canonical scale


@pytest.mark.parametrize("bad", [0, 21, 2.5, True])
def test_nmf_refuses_a_bad_k(bad):
    with pytest.raises(OptionError, match="k must be"):
        nmf(np.ones((30, 20)), bad)


@pytest.mark.parametrize("shape", [(200, 12), (8, 30)])  # scatter-matrix and SVD branches
def test_pca_equals_numpy_svd_up_to_sign(shape):
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape) * np.linspace(3, 0.1, shape[1])
    points, ratio = pca(x)
    centred = x - x.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    want = u[:, :2] * s[:2]
    for k in range(2):
        sign = np.sign(points[:, k] @ want[:, k])
        np.testing.assert_allclose(points[:, k], sign * want[:, k], atol=1e-8)
    np.testing.assert_allclose(ratio, s[:2] ** 2 / (s ** 2).sum())


def test_column_orders_equal_numpy():
    rng = np.random.default_rng(3)
    pooled = rng.normal(size=(50, 7)).astype(np.float32)
    a, b = np.arange(0, 20), np.arange(20, 50)
    np.testing.assert_array_equal(column_order(pooled, "variance"),
                                  np.argsort(-pooled.astype(np.float64).var(0), kind="stable"))
    diff = np.abs(pooled[a].mean(0) - pooled[b].mean(0))
    np.testing.assert_array_equal(column_order(pooled, "difference", a, b),
                                  np.argsort(-diff, kind="stable"))
    np.testing.assert_array_equal(column_order(pooled, "index"), np.arange(7))
    np.testing.assert_allclose(subset_mean(pooled, a), pooled[a].mean(0), rtol=1e-6)
    with pytest.raises(OptionError, match="a=ID and b=ID"):
        column_order(pooled, "difference")
    with pytest.raises(OptionError, match="sort must be one of"):
        column_order(pooled, "random")


def test_region_box_is_the_thresholded_component_around_the_maximum():
    heat = np.zeros((10, 12))
    heat[2:5, 3:7] = 1.0
    heat[3, 4] = 2.0
    heat[8, 10] = 1.5  # a separate blob: not part of the maximum's region
    assert region_box(heat) == [2, 3, 5, 7]
    assert region_box(np.zeros((4, 4))) == [0, 0, 4, 4]


def test_canonical_keys_match_encode_uri_component():
    assert canonical_key("GET", "/api/session") == "GET /api/session"
    assert canonical_key("GET", "/api/matrix", {"sort": "variance", "layer": "block/conv 1",
                                                "a": None, "b": ""}) == \
        "GET /api/matrix?layer=block%2Fconv%201&sort=variance"
    assert canonical_key("GET", "/api/x", {"o": "{\"steps\":8}"}) == \
        "GET /api/x?o=%7B%22steps%22%3A8%7D"


@pytest.mark.slow  # umap-learn's first call compiles with numba (~10 s)
def test_umap_projection_is_seeded(torch_client):
    params = {"layer": "conv2", "method": "umap"}
    first = torch_client.get("/api/projection", params=params).json()
    assert first["method"] == "umap" and first["explained_variance"] is None
    points = np.asarray(first["points"])
    assert points.shape == (120, 2) and np.isfinite(points).all()
    from crosslens.inspector.views import umap_points
    np.testing.assert_array_equal(umap_points(np.random.default_rng(0).normal(size=(40, 5)), 3),
                                  umap_points(np.random.default_rng(0).normal(size=(40, 5)), 3))
