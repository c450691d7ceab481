"""RESULTS.md from a results JSON written by ``run.py``.

``python benchmarks/report.py benchmarks/results/<date>.json [RESULTS.md]`` regenerates
the table without re-running anything. The hand-written analysis in ``NOTES.md`` (why
a target is missed, what was profiled) is appended verbatim.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases  # noqa: E402

FLOOR_TARGET = 1.05  # crosslens time / floor time
LOOP_TARGET = 3.0  # batched crosslens must beat the per-mask loop by this factor
AGREE = 1e-3  # max relative difference to the floor counted as "same result"
MEASURED = ("ok", "partial")  # cell statuses with timings


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.3g} min"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _mb(impl: dict | None) -> str:
    if not impl or impl.get("peak_mb") is None:
        return "–"
    return f"{impl['peak_mb']:.0f}"


def _seconds(cell: dict, impl: str) -> float | None:
    entry = cell.get("implementations", {}).get(impl)
    return None if entry is None else entry.get("seconds")


def _missing(cell: dict) -> str:
    absent = [i for i in cell.get("planned", []) if i not in cell["implementations"]]
    return f"; not yet run: {', '.join(absent)}" if absent else ""


def _runs(cell: dict) -> str:
    entry = cell.get("implementations", {}).get("crosslens") or {}
    if entry.get("warmup_timed"):
        return "1 (warm-up)"
    return str(entry.get("timed_runs", "–"))


#: What a cell can time: crosslens, the batched floor, the per-mask loop, the peers.
IMPLEMENTATIONS = ("crosslens", "floor", "floor_loop", "captum", "tf-keras-vis")


def ratios(implementations: dict[str, dict]) -> dict[str, float]:
    """crosslens' time over each other implementation's, and the per-mask loop's time
    over the batched floor's (``loop_over_batched_floor``; the table and the loop target
    use the loop's time over crosslens', ``1 / ratios["floor_loop"]``)."""
    seconds = {impl: entry.get("seconds") for impl, entry in implementations.items()}
    base = seconds.get("crosslens")
    out = {impl: base / s for impl, s in seconds.items() if impl != "crosslens" and base and s}
    if seconds.get("floor_loop") and seconds.get("floor"):
        out["loop_over_batched_floor"] = seconds["floor_loop"] / seconds["floor"]
    return out


def _loop_speedup(ratios: dict[str, float]) -> float | None:
    """How many times faster crosslens is than the per-mask loop."""
    return 1.0 / ratios["floor_loop"] if ratios.get("floor_loop") else None


def cell_status(cell: dict[str, Any]) -> str:
    """``error`` when crosslens failed, ``partial`` while a planned implementation has not
    run (``--implementations``), else ``ok``."""
    impls = cell["implementations"]
    if "crosslens" in impls and not impls["crosslens"].get("seconds"):
        return "error"
    planned = cell.get("planned") or list(impls)
    return "partial" if any(impl not in impls for impl in planned) else "ok"


def cell_key(cell: dict[str, Any]) -> tuple[str, str, int, str]:
    return cell["framework"], cell["model"], int(cell["batch"]), cell["method"]


def measured_keys(results: dict[str, Any]) -> set[tuple[str, str, int, str]]:
    """Keys of the cells measured successfully (what ``run.py --resume`` keeps)."""
    return {cell_key(c) for c in results.get("cells", []) if c.get("status") == "ok"}


def missing_cells(results: dict[str, Any]) -> list[tuple[str, str, int, str]]:
    """Cells of the full (non-quick) matrix not measured in ``results``, in matrix order."""
    done = measured_keys(results)
    return [key for key in cases.matrix() if key not in done]


def coverage(results: dict[str, Any]) -> list[str]:
    """How much of the full matrix the results hold, and which cells are missing."""
    if results.get("quick"):
        return []
    missing = missing_cells(results)
    total = len(cases.matrix())
    if not missing:
        return [f"All {total} cells of the full matrix measured.", ""]
    groups: dict[tuple[str, str, int], list[str]] = {}
    for framework, model, batch, method in missing:
        groups.setdefault((framework, model, batch), []).append(method)
    return [f"{total - len(missing)} of the {total} cells of the full matrix measured; not "
            "yet measured (`run.py --resume` runs only these):", "",
            "| framework · model | batch | methods |", "|---|---:|---|"] + [
        f"| {fw} · {model} | {batch} | {', '.join(methods)} |"
        for (fw, model, batch), methods in groups.items()] + [""]


def sources(results: dict[str, Any]) -> list[str]:
    """The runs a merged file was made of (``merge.py`` / ``run.py --resume``)."""
    count = len(results["sources"])
    lines = [f"Merged from {count} run{'s' if count != 1 else ''} (`benchmarks/merge.py`; "
             "each cell's `measured` date in the JSON says which):", ""]
    for source in results["sources"]:
        load = source.get("load_average") or []
        only = " ".join(source.get("only") or []) or "full matrix"
        lines.append(f"- {source.get('date')}: `{only}`, {source.get('cells')} cells, "
                     f"threads {source.get('threads') or 'default'}, load average "
                     f"{', '.join(f'{v:.1f}' for v in load) or '?'} at start"
                     + (f". {source['note']}" if source.get("note") else ""))
    return lines + [""]


def cell_line(cell: dict) -> str:
    """One line of progress output for a finished cell."""
    head = f"{cell['method']:<13}"
    if cell.get("status") not in MEASURED:
        return f"{head} {cell.get('status')}: {'; '.join(cell.get('notes', []))}"
    parts = [f"crosslens {_time(_seconds(cell, 'crosslens'))}"]
    for impl in ("floor", "captum", "tf-keras-vis", "floor_loop"):
        if impl in cell["implementations"]:
            ratio = cell["ratios"].get(impl)
            parts.append(f"{impl} {_time(_seconds(cell, impl))}"
                         + (f" (×{ratio:.2f})" if ratio else ""))
    agree = cell.get("agreement", {}).get("floor")
    if agree is not None:
        parts.append(f"Δfloor {agree:.1e}")
    return head + " " + ", ".join(parts)


def native_key(row: dict[str, Any]) -> tuple[str, str, int, str]:
    """Key of a native-vs-peer comparison (``cases.NATIVE_PEERS``)."""
    return row["framework"], row["model"], int(row["batch"]), row["comparison"]


def _native_options(row: dict[str, Any]) -> str:
    options = row.get("options", {})
    if "composite" in options:
        return f"composite={options['composite']}"
    if "samples" in options:
        return (f"{options.get('features', '?')} features (grid), {options['samples']} "
                "coalitions")
    return ", ".join(f"{k}={v}" for k, v in options.items())


def native_line(row: dict[str, Any]) -> str:
    """One line of progress output for a finished native-vs-peer comparison."""
    head = f"{row['comparison']:<22}"
    if row.get("status") != "ok":
        return f"{head} {row.get('status')}: {'; '.join(row.get('notes', []))}"
    peer = row["peer"]
    return (f"{head} crosslens {_time(_seconds(row, 'crosslens'))}, {peer} "
            f"{_time(_seconds(row, peer))} (×{row['ratios'][peer]:.2f}), "
            f"Δ{peer} {row['agreement']:.1e}")


def native_table(results: dict[str, Any]) -> list[str]:
    """Native methods against the library that defined them, same model, input, options."""
    rows = results.get("native_peers") or []
    if not rows:
        return []
    lines = ["## Native methods against the library that defined them", "",
             "crosslens' native implementation and the reference library timed side by side "
             "(interleaved, one process, medians as above) on the same model, input, target "
             "and options: LRP against zennit (its composite with `SequentialMergeBatchNorm`, "
             "made exact, and its ResNet bottleneck canonizer; a `Gradient` attributor per "
             "call), KernelSHAP against Captum's `KernelShap` fed crosslens' coalitions "
             "(`peers.py`). Ratio: crosslens time / the peer's. Δ: max |crosslens − peer| / "
             "max |peer| (in parentheses: against zennit with its own, inexact batch-norm "
             "merge).", "",
             "| comparison | model | batch | options | crosslens | peer | peer time | "
             "crosslens/peer | peak MB (crosslens / peer) | Δ vs peer | runs |",
             "|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        peer = row["peer"]
        if row.get("status") != "ok":
            lines.append(f"| {row['comparison']} | {row['model']} | {row['batch']} | "
                         f"{_native_options(row)} | {row.get('status')} | {peer} | | | | | "
                         f"{'; '.join(row.get('notes', []))} |")
            continue
        impls = row["implementations"]
        agree = row.get("agreement")
        plain = row.get("agreement_plain_merge")
        lines.append(
            f"| {row['comparison']} | {row['model']} | {row['batch']} | "
            f"{_native_options(row)} | {_time(_seconds(row, 'crosslens'))} | {peer} | "
            f"{_time(_seconds(row, peer))} | {_ratio(row['ratios'].get(peer))} | "
            f"{_mb(impls.get('crosslens'))} / {_mb(impls.get(peer))} | "
            f"{'–' if agree is None else f'{agree:.1e}'}"
            f"{'' if plain is None else f' ({plain:.1e})'} | {_runs(row)} |")
    return lines + [""]


def table(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for cell in results["cells"]:
        groups.setdefault((cell["framework"], cell["model"]), []).append(cell)
    for (framework, model), cells in groups.items():
        peer = "captum" if framework == "torch" else "tf-keras-vis"
        lines += [f"### {framework} · {model}", "",
                  f"| method | batch | crosslens | floor | crosslens/floor | {peer} | "
                  f"crosslens/{peer} | per-mask loop | loop/crosslens | "
                  f"peak MB (crosslens / floor / {peer}) | Δ vs floor | runs |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for cell in cells:
            if cell.get("status") not in MEASURED:
                note = "; ".join(cell.get("notes", [])) or cell.get("status", "")
                lines.append(f"| {cell['method']} | {cell['batch']} | {cell.get('status')} "
                             f"| | | | | | | | | {note} |")
                continue
            impls, ratios = cell["implementations"], cell["ratios"]
            agree = cell.get("agreement", {}).get("floor")
            peer_cell = _time(_seconds(cell, peer)) if peer in impls else (
                "not yet run" if peer in cell.get("planned", []) else "n/a")
            lines.append(
                f"| {cell['method']} | {cell['batch']} | {_time(_seconds(cell, 'crosslens'))} | "
                f"{_time(_seconds(cell, 'floor'))} | {_ratio(ratios.get('floor'))} | "
                f"{peer_cell} | {_ratio(ratios.get(peer))} | "
                f"{_time(_seconds(cell, 'floor_loop')) if 'floor_loop' in impls else ''} | "
                f"{_ratio(_loop_speedup(ratios)) if 'floor_loop' in impls else ''}"
                f" | {_mb(impls.get('crosslens'))} / {_mb(impls.get('floor'))} / "
                f"{_mb(impls.get(peer))} | "
                f"{'–' if agree is None else f'{agree:.0e}'} | {_runs(cell)}{_missing(cell)} |")
        lines.append("")
    return lines


def targets(results: dict[str, Any]) -> list[str]:
    floor, peers, loops, errors = [], [], [], []
    for cell in results["cells"]:
        if cell.get("status") not in MEASURED:
            continue
        key = f"{cell['framework']} {cell['model']} b{cell['batch']} {cell['method']}"
        ratios = cell["ratios"]
        if ratios.get("floor") and ratios["floor"] > FLOOR_TARGET:
            floor.append(f"{key} ({ratios['floor']:.2f}×)")
        for peer in ("captum", "tf-keras-vis"):
            if ratios.get(peer) and ratios[peer] > 1.0:
                peers.append(f"{key} vs {peer} ({ratios[peer]:.2f}×)")
        loop = _loop_speedup(ratios)
        if loop is not None and loop < LOOP_TARGET:
            loops.append(f"{key} (batched only {loop:.2f}× faster than the loop)")
        agree = cell.get("agreement", {}).get("floor")
        if agree is not None and agree > AGREE:
            errors.append(f"{key} (Δ {agree:.1e})")
    count = {status: sum(1 for c in results["cells"] if c.get("status") == status)
             for status in ("ok", "partial")}
    lines = ["## Targets", "",
             f"{count['ok']} cells measured, {count['partial']} in part, "
             f"{len(results['cells']) - count['ok'] - count['partial']} skipped.", ""]
    for title, misses in ((f"crosslens ≤ {FLOOR_TARGET}× the floor", floor),
                          ("crosslens never slower than Captum / tf-keras-vis", peers),
                          (f"batched occlusion / Score-CAM ≥ {LOOP_TARGET:g}× faster than "
                           "per-mask loops", loops),
                          (f"crosslens equals the floor (relative Δ ≤ {AGREE:g})", errors)):
        if misses:
            lines.append(f"- **{title}**: missed by {len(misses)}: " + "; ".join(misses))
        else:
            lines.append(f"- **{title}**: met in every measured cell")
    return lines + [""]


def render(results: dict[str, Any]) -> str:
    machine, versions = results.get("machine", {}), results.get("versions", {})
    args = results.get("args", {})
    device = machine.get("device_name") or machine.get("device", "cpu")
    tool = "merge.py" if results.get("sources") else "run.py"
    lines = ["# Benchmark results", "",
             f"Generated by `python benchmarks/{tool}` ({results['date']}"
             f"{', --quick' if results.get('quick') else ''}) on {device}, "
             f"{machine.get('cpu_count')} CPU cores, load average "
             f"{', '.join(f'{v:.1f}' for v in machine.get('load_average', []))} at start. "
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".", "",
             "Times are medians of the timed runs of each implementation after one untimed "
             "warm-up, interleaved across implementations; `runs` is the count (fewer for "
             f"expensive cells: the runs of one implementation fit {args.get('cell_budget')} s; "
             "`1 (warm-up)` means a single run longer than that, timed as is). "
             "*floor* is the hand-written batched loop (`floors_torch.py`: "
             "`torch.autograd.grad`; `floors_keras.py`: compiled `tf.function`), in passes "
             "as large as the memory budget allows (the cell's `chunk`; on a CPU crosslens "
             "caps its passes lower, `crosslens_pass`); *per-mask loop* is the naive "
             "one-pass-per-window / per-channel loop. Ratios are crosslens time divided by "
             "the other's (below 1: crosslens faster); *loop/crosslens* is how much "
             "faster crosslens' batching is than the loop. Peak MB: on the CPU the "
             "process' peak resident memory above its size before the call; on a GPU the "
             "allocator's peak. Δ vs floor: max |crosslens − floor| / max |floor| "
             "(SmoothGrad: with the same explicit noise).", ""]
    if results.get("note"):
        lines += [results["note"], ""]
    if results.get("sources"):
        lines += sources(results)
    elif args.get("only"):
        lines += [f"Subset: `--only {' '.join(args['only'])}`.", ""]
    lines += coverage(results)
    translation = results.get("translation")
    if translation:
        lines += ["## Translation (PyTorch → Keras, EfficientNet-Lite0)", "",
                  "| call | time | peak MB |", "|---|---:|---:|",
                  f"| first (convert + verify) | {_time(translation.get('first_s'))} | "
                  f"{translation.get('first_peak_mb', 0):.0f} |",
                  f"| cached | {_time(translation.get('cached_s'))} | "
                  f"{translation.get('cached_peak_mb', 0):.0f} |", ""]
    for note in results.get("skipped_models", []):
        lines.append(f"- model skipped: {note}")
    if results.get("skipped_models"):
        lines.append("")
    lines += ["## Times", ""] + table(results) + targets(results) + native_table(results)
    if results.get("featurevis"):
        lines += ["## Feature visualization", "",
                  "`crosslens.visualize` steps per second (Fourier parameterization, standard "
                  "transforms, batch 4); *model* is the framework's forward-backward pass, "
                  "*host* the parameterization, transforms and optimizer in numpy.", "",
                  "| framework | model | size | steps/s | ms/step | model ms | host ms |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for row in results["featurevis"]:
            lines.append(f"| {row['framework']} | {row['model']} | {row.get('size')} | "
                         f"{row['steps_per_second']:.2f} | {row['ms_per_step']:.0f} | "
                         f"{row['backend_ms_per_step']:.0f} | {row['host_ms_per_step']:.0f} |")
        lines.append("")
    notes = os.path.join(HERE, "NOTES.md")
    if os.path.exists(notes):
        with open(notes, encoding="utf-8") as handle:
            lines += [handle.read().strip(), ""]
    return "\n".join(lines)


def write(results: dict[str, Any], path: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render(results))
    return path


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python benchmarks/report.py RESULTS.json [RESULTS.md]")
    with open(sys.argv[1]) as handle:
        data = json.load(handle)
    print(write(data, sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "RESULTS.md")))
