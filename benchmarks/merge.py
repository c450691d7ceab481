"""Combine results JSONs of several runs into one, and say which matrix cells are missing.

On a small CPU the full matrix takes longer than one sitting (ResNet50 Score-CAM at batch
16 alone is hours per implementation), so it is measured in parts: ``run.py --resume``
keeps the cells of earlier runs and measures only the rest, and this script merges
parts that ran separately (for example two single-threaded runs side by side)::

    python benchmarks/merge.py results/a.json results/b.json --out results/all.json

writes the merged JSON and regenerates ``RESULTS.md`` from it (``--md ''`` for none).
Measurements of the same cell are combined implementation by implementation (the later
file wins for an implementation measured in both; a skipped or failed cell never
replaces timings), so a cell too long for one sitting can be measured one part at a time
(``run.py --implementations crosslens,floor``, later ``--implementations floor_loop``).
Every implementation keeps the date of the run that measured it (``measured``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import cases  # noqa: E402
import report  # noqa: E402
from report import cell_key  # noqa: E402


def _source(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What is worth keeping of one run besides its cells (flattened for merged files)."""
    if "sources" in results:
        return list(results["sources"])
    args = results.get("args", {})
    return [{"date": results.get("date"), "only": args.get("only") or [],
             "threads": args.get("threads"), "repeats": args.get("repeats"),
             "load_average": results.get("machine", {}).get("load_average"),
             "note": results.get("note"), "cells": len(results.get("cells", []))}]


def combine(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """One cell from two measurements of it: implementations measured in either are kept,
    the newer measurement of an implementation wins, ratios are recomputed. A skipped or
    failed cell never replaces one with timings."""
    if new.get("status") not in report.MEASURED:
        return old if old.get("status") in report.MEASURED else new
    if old.get("status") not in report.MEASURED:
        return new
    cell = dict(new)
    cell["implementations"] = {**old["implementations"], **new["implementations"]}
    cell["agreement"] = {**old.get("agreement", {}), **new.get("agreement", {})}
    cell["planned"] = list(dict.fromkeys((old.get("planned") or list(old["implementations"]))
                                         + (new.get("planned") or [])))
    cell["notes"] = list(dict.fromkeys(old.get("notes", []) + new.get("notes", [])))
    cell["ratios"] = report.ratios(cell["implementations"])
    cell["status"] = report.cell_status(cell)
    return cell


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One results dict from several; the last part's environment heads the merged one."""
    if not parts:
        raise ValueError("nothing to merge")
    cells: dict[tuple, dict[str, Any]] = {}
    for part in parts:
        for cell in part.get("cells", []):
            cell = dict(cell)
            cell.setdefault("measured", part.get("date"))
            old = cells.get(cell_key(cell))
            cells[cell_key(cell)] = cell if old is None else combine(old, cell)
    # matrix order; cells outside the full matrix (e.g. --quick models) follow as they came
    position = {key: i for i, key in enumerate(cases.matrix())}
    ordered = sorted(cells.values(), key=lambda c: position.get(cell_key(c), len(position)))
    featurevis: dict[tuple[str, str], dict] = {}
    for part in parts:
        for row in part.get("featurevis") or []:
            featurevis[(row["framework"], row["model"])] = row
    native: dict[tuple, dict] = {}  # the later row of a comparison wins, unless it failed
    for part in parts:
        for row in part.get("native_peers") or []:
            key = report.native_key(row)
            if row.get("status") == "ok" or native.get(key, {}).get("status") != "ok":
                native[key] = row
    last = parts[-1]
    merged = {key: last[key] for key in ("date", "quick", "args", "versions", "machine")
              if key in last}
    merged["args"] = dict(merged.get("args", {}), only=[])
    merged.update(
        cells=ordered, featurevis=list(featurevis.values()),
        native_peers=list(native.values()),
        translation=next((p["translation"] for p in reversed(parts)
                          if p.get("translation")), None),
        skipped_models=sorted({n for p in parts for n in p.get("skipped_models", [])}),
        sources=_unique([source for part in parts for source in _source(part)]))
    return merged


def _unique(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sources in order, each once (resumed files repeat the sources they started from)."""
    seen, out = set(), []
    for source in sources:
        key = json.dumps(source, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(source)
    return out


def load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def save(results: dict[str, Any], path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1, default=_plain)
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="+", help="results JSONs, earliest first")
    parser.add_argument("--out", required=True, help="merged JSON to write")
    parser.add_argument("--md", default=os.path.join(HERE, "RESULTS.md"),
                        help="RESULTS.md to regenerate ('' for none)")
    args = parser.parse_args(argv)
    merged = merge([load(path) for path in args.parts])
    save(merged, args.out)
    missing = report.missing_cells(merged)
    print(f"{args.out}: {len(merged['cells'])} cells, "
          f"{len(cases.matrix()) - len(missing)} of {len(cases.matrix())} matrix cells "
          "measured")
    if args.md:
        print(report.write(merged, args.md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
