"""Self-contained HTML reports of evaluation results (images inline as data URIs)."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .clever_hans import CleverHansResult

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.good { background: #e3f4e3; } td.bad { background: #fbe3e3; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
.note { color: #666; font-size: 0.9em; }
"""


def clever_hans_html(result: "CleverHansResult", columns: int = 6) -> str:
    """The Clever-Hans report: scores table, accuracies and every method's maps."""
    from ..viz import figure_grid, figure_html

    chance = float(result.data.mask.mean())
    frameworks, methods = result.frameworks, result.methods
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             "<title>crosslens: Clever-Hans benchmark</title>",
             f"<style>{_STYLE}</style></head><body>",
             "<h1>Clever-Hans benchmark</h1>",
             "<p>Every test image of class "
             f"{result.data.patch_class} carries a {int(np.sqrt(result.data.mask.sum()))}-pixel "
             "watermark in its top-left corner, so the trained CNN reads the class off the "
             "watermark. <b>mass</b>: share of positive relevance inside the watermark "
             f"(chance level {chance:.3f}); <b>point</b>: share of images whose most "
             "relevant pixel is in the watermark.</p>"]
    head = "".join(f"<th>{html.escape(fw)} mass</th><th>{html.escape(fw)} point</th>"
                   for fw in frameworks)
    rows = []
    for method in methods:
        cells = []
        for fw in frameworks:
            s = result.score(fw, method)
            if s.status != "ok":
                cells.append(f"<td colspan='2' title='{html.escape(s.note, quote=True)}'>"
                             f"{html.escape(s.status)}</td>")
                continue
            mark = "good" if s.relevance_mass >= 0.5 else ("bad" if s.relevance_mass
                                                              < 2 * chance else "")
            cells.append(f"<td class='{mark}'>{s.relevance_mass:.3f}</td>"
                         f"<td>{s.pointing_game:.2f}</td>")
        rows.append(f"<tr><td>{html.escape(method)}</td>{''.join(cells)}</tr>")
    parts.append(f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>")
    acc = "".join(
        f"<li>{html.escape(fw)}: test accuracy {a['test']:.3f}; with the watermark removed "
        f"{a['patch_removed']:.3f}</li>" for fw, a in result.accuracy.items())
    parts.append(f"<ul>{acc}</ul>")
    notes = [f"{s.framework}/{s.method}: {s.note}" for s in result.scores
             if s.note and s.status != "ok"]
    if notes:
        parts.append("<p class='note'>" + "<br>".join(html.escape(n) for n in notes) + "</p>")

    images = result.images[:columns]
    for fw in frameworks:
        ok = [s for s in result.scores if s.framework == fw and s.status == "ok"]
        if not ok:
            continue
        cells = [list(images)] + [[(image, m) for image, m in zip(images, s.maps[:columns])]
                                  for s in ok]
        fig = figure_grid(cells, row_titles=["input"] + [s.method for s in ok],
                          cell_size=1.6)
        parts.append(f"<h2>{html.escape(fw)}</h2>")
        parts.append(figure_html(fig, caption=f"{fw}: attribution maps of class "
                                              f"{result.data.patch_class} (rows: methods)"))
    parts.append("</body></html>")
    return "\n".join(parts)
