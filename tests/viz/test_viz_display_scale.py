"""Display scaling: Captum's outlier_perc rule, offsets, neutral zero, colour bars, legends.

Only the display is scaled; these tests check the numbers that decide colours against
numpy references and Captum's own functions, not shapes.
"""

import numpy as np
import pytest

import crosslens.viz as viz
from crosslens.core.explanation import Explanation


def _bump(h=24, w=32, offset=30.0):
    """A smooth Gaussian bump of height 4 on a constant offset (a RISE-like map)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return offset + 4.0 * np.exp(-((yy - 9.0) ** 2 + (xx - 20.0) ** 2) / 30.0)


def _captum_threshold_reference(values, outlier_perc):
    """Numpy reference of Captum's rule: sorted |a|, first index whose cumulative sum
    reaches (100 - outlier_perc) % of the total."""
    mag = np.sort(np.abs(np.asarray(values, dtype=np.float64)).ravel())
    cum = np.cumsum(mag)
    return mag[np.argmax(cum >= cum[-1] * 0.01 * (100.0 - outlier_perc))]


@pytest.fixture(params=[0, 1, 2])
def heavy_map(request):
    rng = np.random.default_rng(request.param)
    return rng.standard_t(df=2, size=(28, 36)) * (request.param + 1)


# --- Captum's percentile (outlier_perc) rule ----------------------------------------------

@pytest.mark.parametrize("outlier_perc", [0.0, 2.0, 10.0, 37.5])
def test_outlier_threshold_matches_numpy_reference_and_captum(heavy_map, outlier_perc):
    vis = pytest.importorskip("captum.attr._utils.visualization")
    t = viz.outlier_threshold(heavy_map, outlier_perc)
    assert t == _captum_threshold_reference(heavy_map, outlier_perc)
    assert t == vis._cumulative_sum_threshold(np.abs(heavy_map), 100.0 - outlier_perc)
    if outlier_perc == 0.0:
        assert t == np.abs(heavy_map).max()


@pytest.mark.parametrize("outlier_perc", [2.0, 10.0])
def test_percentile_display_equals_captum_normalize_attr(heavy_map, outlier_perc):
    vis = pytest.importorskip("captum.attr._utils.visualization")
    signed = viz.display_scale(heavy_map, "percentile", outlier_perc=outlier_perc, signed=True)
    np.testing.assert_array_equal(signed.unit(heavy_map),
                                  vis._normalize_attr(heavy_map, "all", outlier_perc))
    unsigned = viz.display_scale(heavy_map, "percentile", outlier_perc=outlier_perc,
                                 signed=False)
    np.testing.assert_array_equal(unsigned.unit(heavy_map),
                                  vis._normalize_attr(heavy_map, "absolute_value", outlier_perc))
    # Captum's default clips: some pixels saturate, most do not.
    share = np.mean(np.abs(signed.unit(heavy_map)) == 1.0)
    assert 0.0 < share < 0.2


def test_outlier_rule_is_a_mass_share_not_np_percentile(heavy_map):
    # Documented difference: 98 % of the |a| *mass*, not the 98th percentile of |a|.
    assert viz.outlier_threshold(heavy_map, 2.0) != np.percentile(np.abs(heavy_map), 98.0)


def test_max_abs_and_degenerate_maps():
    a = np.array([[0.5, -2.0], [1.0, 0.0]])
    ds = viz.display_scale(a, "max_abs")
    assert (ds.signed, ds.vmin, ds.vmax) == (True, -2.0, 2.0)
    np.testing.assert_array_equal(ds.unit(a), a / 2.0)
    zero = viz.display_scale(np.zeros((3, 3)))
    assert zero.vmax == 0.0 and not zero.unit(np.zeros((3, 3))).any()
    assert viz.outlier_threshold(np.zeros((3, 3))) == 0.0
    assert np.all(np.isfinite(viz.heatmap_rgba(np.zeros((3, 3)), signed=True)))
    # a constant positive map is not an offset map: it shows as uniformly strong
    assert not viz.has_offset(np.full((4, 4), 3.0))


@pytest.mark.parametrize("bad", [-1.0, 100.0, "2", True])
def test_bad_options_are_refused(bad):
    with pytest.raises(ValueError, match="outlier_perc"):
        viz.display_scale(np.ones((2, 2)), "percentile", outlier_perc=bad)
    with pytest.raises(ValueError, match="auto, percentile, minmax, max_abs"):
        viz.display_scale(np.ones((2, 2)), "zscore")
    with pytest.raises(ValueError, match="neutral colour"):
        viz.display_scale(np.ones((2, 2)), "minmax", signed=True)


# --- offset maps (RISE, occlusion) ----------------------------------------------------------

def test_offset_map_spans_the_full_colour_range():
    m = _bump()
    assert viz.has_offset(m) and viz.has_offset(-m)
    ds = viz.display_scale(m)  # auto
    assert ds.mode == "minmax" and not ds.signed
    assert (ds.vmin, ds.vmax) == (m.min(), m.max())
    pos = ds.position(m)
    assert pos.min() == 0.0 and pos.max() == 1.0
    np.testing.assert_allclose(pos, (m - m.min()) / (m.max() - m.min()), rtol=0, atol=1e-15)
    # colours and opacity follow the structure: the lowest value is transparent and at
    # the dark end of the colormap, the peak opaque at the bright end
    from matplotlib import colormaps

    rgba = viz.heatmap_rgba(m)
    lo, hi = np.unravel_index(m.argmin(), m.shape), np.unravel_index(m.argmax(), m.shape)
    np.testing.assert_allclose(rgba[lo], list(colormaps["inferno"](0.0)[:3]) + [0.0])
    np.testing.assert_allclose(rgba[hi], list(colormaps["inferno"](1.0)[:3]) + [1.0])
    # scaled from zero instead, the bump would use under a fifth of the colour range
    from_zero = viz.display_scale(m, "max_abs").position(m)
    assert np.ptp(from_zero) < 0.2 and from_zero.min() > 0.8


def test_offset_rule_boundaries():
    base = np.linspace(1.0, 2.0, 50).reshape(5, 10)  # min/max = 0.5: exactly the rule
    assert viz.has_offset(base)
    assert not viz.has_offset(base - 0.01)  # min/max < 0.5
    assert not viz.has_offset(base - 1.5)  # both signs
    assert viz.display_scale(base - 0.01).mode == "percentile"
    # a signed display is never min-max (zero must stay neutral)
    assert viz.display_scale(base, signed=True).mode == "percentile"


def test_figure_never_changes_the_raw_attributions():
    raw = np.broadcast_to(_bump(16, 16)[None, None], (1, 3, 16, 16)).copy()
    before = raw.copy()
    exp = Explanation(raw, np.zeros((1, 3, 16, 16)), "rise", layout="channels_first")
    exp.figure()
    exp.figure(scale="percentile", outlier_perc=5)
    np.testing.assert_array_equal(exp.attributions, before)


# --- signed maps: zero stays neutral --------------------------------------------------------

@pytest.mark.parametrize("scale", ["auto", "percentile", "max_abs"])
@pytest.mark.parametrize("cmap", [None, "RdBu", "coolwarm"])
def test_signed_maps_map_zero_to_the_neutral_colour(scale, cmap):
    from matplotlib import colormaps

    rng = np.random.default_rng(3)
    m = rng.standard_normal((12, 12)) * np.array([1.0, 5.0])[rng.integers(0, 2, (12, 12))]
    m[::3, ::4] = 0.0
    m += 2.0 * (m > 0)  # asymmetric: mostly positive mass, still signed
    ds = viz.display_scale(m, scale)
    assert ds.signed and ds.vmin == -ds.vmax
    assert np.all(ds.position(m)[m == 0.0] == 0.5)
    rgba = viz.heatmap_rgba(m, cmap=cmap, scale=scale)
    neutral = (1.0, 1.0, 1.0) if cmap is None else colormaps[cmap](0.5)[:3]
    np.testing.assert_allclose(rgba[m == 0.0][:, :3], np.tile(neutral, ((m == 0).sum(), 1)))
    assert np.all(rgba[m == 0.0][:, 3] == 0.0)  # transparent: the photo shows through
    # and the overlay leaves those pixels exactly as the photo
    img = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    np.testing.assert_array_equal(viz.overlay(img, m, cmap=cmap, scale=scale)[m == 0.0],
                                  img[m == 0.0])


# --- one map broadcast over channels ---------------------------------------------------------

def test_image_maps_of_a_broadcast_map_equal_the_single_map():
    rng = np.random.default_rng(0)
    single = rng.standard_normal((2, 10, 12))
    nchw = np.broadcast_to(single[:, None], (2, 3, 10, 12)).copy()
    first = Explanation(nchw, np.zeros_like(nchw), "rise", layout="channels_first")
    np.testing.assert_array_equal(first.image_maps(), single)
    np.testing.assert_array_equal(first.image_maps("mean"), single)
    np.testing.assert_array_equal(first.image_maps("l2"), np.abs(single))
    last = Explanation(np.moveaxis(nchw, 1, -1), None, "occlusion", layout="channels_last")
    np.testing.assert_array_equal(last.image_maps(), single)
    # channels that differ anywhere (in one sample) are summed as before
    nchw[1, 2, 4, 5] += 1.0
    summed = Explanation(nchw, None, "saliency", layout="channels_first").image_maps()
    np.testing.assert_allclose(summed, nchw.sum(axis=1))
    assert viz.is_channel_broadcast(np.ones((4, 4, 3))) and not viz.is_channel_broadcast(
        np.ones((4, 4, 1)))
    np.testing.assert_array_equal(viz.prepare_map(np.moveaxis(first.numpy()[0], 0, -1)),
                                  single[0])


def test_image_maps_of_real_rise_and_occlusion_are_one_map():
    torch = pytest.importorskip("torch")
    import crosslens as cl

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3)).eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    for method, options in (("rise", {"samples": 40, "seed": 0}),
                            ("occlusion", {"patch": 4})):
        exp = cl.explain(model, x, method, target=[0, 1], **options)
        raw = exp.numpy()
        assert np.array_equal(raw[:, 0], raw[:, 2])  # the method broadcasts one map
        np.testing.assert_array_equal(exp.image_maps(), raw[:, 0])


# --- colour bars ------------------------------------------------------------------------------

def _colorbar_of(fig, index):
    (cax,) = fig.axes[index].child_axes
    return cax


@pytest.mark.parametrize("kind", ["overlay", "heatmap"])
def test_colour_bar_ticks_show_the_mapped_range(kind):
    img = np.full((24, 32, 3), 0.5)
    offset = _bump()
    signed = np.random.default_rng(2).standard_normal((24, 32))
    cells = [viz.Cell(kind, image=img, attribution=offset),
             viz.Cell(kind, image=img, attribution=signed),
             viz.Cell(kind, image=img, attribution=signed, scale="max_abs")]
    fig = viz.figure_grid(cells, cell_size=1.0, colorbar=True)
    fig.canvas.draw()
    expected = [(offset.min(), offset.max()),
                (-viz.outlier_threshold(signed), viz.outlier_threshold(signed)),
                (-np.abs(signed).max(), np.abs(signed).max())]
    for index, (lo, hi) in enumerate(expected):
        cax = _colorbar_of(fig, index)
        np.testing.assert_allclose(cax.get_ylim(), (lo, hi))
        labels = [t.get_text() for t in cax.get_yticklabels()]
        ends = [f"{lo:.3g}", f"{hi:.3g}"]
        assert labels == (ends if index == 0 else [ends[0], "0", ends[1]])
        assert cax.get_ylabel() == ["min-max", "top 2% clipped", "max |a|"][index]


def test_explanation_figure_options_reach_the_colour_bar():
    raw = np.broadcast_to(_bump(16, 16)[None, None], (1, 3, 16, 16)).copy()
    exp = Explanation(raw, np.zeros((1, 3, 16, 16)), "rise", layout="channels_first")
    auto = exp.figure()
    np.testing.assert_allclose(_colorbar_of(auto, 1).get_ylim(), (raw.min(), raw.max()))
    clipped = exp.figure(scale="percentile", outlier_perc=5)
    t = viz.outlier_threshold(raw[0, 0], 5)
    np.testing.assert_allclose(_colorbar_of(clipped, 1).get_ylim(), (0.0, t))
    assert not exp.figure(colorbar=False).axes[1].child_axes


# --- legend -----------------------------------------------------------------------------------

def test_legend_has_a_row_per_method_with_colours_rule_and_ranges():
    bump, signed = _bump(), np.random.default_rng(2).standard_normal((24, 32))
    scales = {"rise": [viz.display_scale(bump), viz.display_scale(bump + 1)],
              "saliency <x>": [viz.display_scale(signed), viz.display_scale(np.abs(signed))]}
    page = viz.scale_legend_html(scales, sample_names=["cat", "coffee"], caption="Legend")
    assert page.startswith('<table class="crosslens-legend">') and page.count("<tr>") == 3
    assert "<th>range: cat</th><th>range: coffee</th>" in page
    rise_row = page.split("<tr>")[2]
    assert "<td>rise</td>" in rise_row and "unsigned, sequential inferno" in rise_row
    assert "min-max" in rise_row and "an offset" in rise_row
    assert f"<td>[{bump.min():.3g}, {bump.max():.3g}]</td>" in rise_row
    sal_row = page.split("<tr>")[3]
    assert "<td>saliency &lt;x&gt;</td>" in sal_row  # escaped
    # signed for one photo, unsigned for the other: said per photo
    assert "cat: signed, diverging bwr (blue negative, white zero, red positive)" in sal_row
    assert "coffee: unsigned, sequential inferno of |a|" in sal_row
    assert "Captum outlier_perc=2" in sal_row
    t = viz.outlier_threshold(signed)
    assert f"<td>[{-t:.3g}, {t:.3g}]</td>" in sal_row
