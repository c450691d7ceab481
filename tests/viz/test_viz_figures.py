"""Figures, PNG output, HTML embedding and import hygiene."""

import base64
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import crosslens.viz as viz

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_fig():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    m = rng.standard_normal((4, 6))
    rows = [[img, (img, m), m], [img, viz.Cell("heatmap", attribution=np.abs(m)), None]]
    return viz.figure_grid(
        rows,
        titles=[["cat (0.9)", None, None], ["dog", None, None]],
        row_titles=["a", "b"],
        col_titles=["input", "overlay", "raw"],
        cell_size=1.0,
        colorbar=True,
    )


def test_figure_grid_layout(small_fig):
    from matplotlib.figure import Figure

    assert isinstance(small_fig, Figure)
    grid_axes = small_fig.axes
    assert len(grid_axes) == 6
    assert grid_axes[0].get_title() == "input\ncat (0.9)"
    assert grid_axes[1].get_title() == "overlay"
    assert grid_axes[3].get_title() == "dog"
    assert grid_axes[0].get_ylabel() == "a" and grid_axes[3].get_ylabel() == "b"
    assert not grid_axes[5].axison  # the None cell is blank
    # Colorbars (inset axes) on the overlay, the raw signed map and the abs heatmap only.
    assert [len(ax.child_axes) for ax in grid_axes] == [0, 1, 1, 0, 1, 0]


def test_save_figure_writes_readable_png(small_fig, tmp_path):
    from matplotlib.image import imread

    path = viz.save_figure(small_fig, tmp_path / "deep" / "dir" / "grid.png", dpi=50)
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    arr = imread(str(path))
    w, h = small_fig.get_size_inches() * 50
    assert abs(arr.shape[0] - h) <= 1 and abs(arr.shape[1] - w) <= 1
    assert arr.shape[2] in (3, 4)


def test_png_bytes_and_html(small_fig):
    png = viz.figure_to_png_bytes(small_fig, dpi=30)
    assert png[:8] == PNG_SIGNATURE
    uri = viz.png_data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png
    html = viz.figure_html(png, caption="Grad-CAM <layer4>")
    assert html.startswith("<figure") and html.endswith("</figure>")
    assert f'src="{uri}"' in html
    assert "<figcaption>Grad-CAM &lt;layer4&gt;</figcaption>" in html
    assert "<figcaption>" not in viz.figure_html(png)


def test_flat_input_wraps_into_ncols():
    imgs = [np.zeros((4, 4, 3), dtype=np.uint8)] * 5
    fig = viz.figure_grid(imgs, titles=list("abcde"), ncols=2, cell_size=0.5)
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:5]] == list("abcde")


def test_import_is_light_and_framework_free():
    code = (
        "import sys, numpy as np, crosslens.viz as v\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'\n"
        "v.save_figure(v.figure_grid([np.zeros((4, 4, 3))], cell_size=0.5), sys.argv[1])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras', 'jax')]\n"
        "assert not bad, bad\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        # show() outside a notebook with a non-interactive backend only warns.
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    v.show(v.figure_grid([np.zeros((4, 4, 3))], cell_size=0.5))\n"
        "assert any(issubclass(x.category, RuntimeWarning) for x in w), w\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        subprocess.run(
            [sys.executable, "-c", code, str(Path(d) / "x.png")], check=True, env=_env()
        )


def _env():
    import os

    import crosslens.viz

    env = dict(os.environ)
    src = str(Path(crosslens.viz.__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLBACKEND"] = "Agg"
    return env
