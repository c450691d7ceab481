"""``crosslens evaluate``: run the Clever-Hans benchmark, print its table, write a report.

The lead's ``crosslens.cli`` wires it as a subcommand::

    sub = subparsers.add_parser("evaluate", help=HELP)
    add_arguments(sub)
    sub.set_defaults(func=run_evaluate)
"""
from __future__ import annotations

import argparse
import json
import sys

HELP = "Clever-Hans benchmark: where does each method put relevance on a watermark task"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``evaluate`` options to ``parser``."""
    parser.add_argument("--frameworks", nargs="+", choices=("torch", "keras"), default=None,
                        help="frameworks to train and explain (default: those installed)")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help="methods to score (default: every registered attribution "
                             "method the backend supports, except feature_permutation, "
                             "which explains the batch, not an image)")
    parser.add_argument("--source", choices=("digits", "synthetic"), default="digits",
                        help="image content: scikit-learn digits or synthetic bars")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, training, methods")
    parser.add_argument("--n", type=int, default=600, help="images in the data set")
    parser.add_argument("--samples", type=int, default=8,
                        help="watermarked test images explained per method")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs")
    parser.add_argument("--sanity", action="store_true",
                        help="also run the cascading model-randomization check per method")
    parser.add_argument("--report", default="clever_hans_report.html", metavar="HTML",
                        help="path of the HTML report ('' for none)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the scores as JSON")
    return parser


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed ``args``; returns the exit status."""
    from .clever_hans import clever_hans_benchmark

    result = clever_hans_benchmark(args.seed, frameworks=args.frameworks,
                                   methods=args.methods, source=args.source, n=args.n,
                                   samples=args.samples, epochs=args.epochs)
    print(result.table())
    sanity = _sanity(result, args) if getattr(args, "sanity", False) else None
    if sanity:
        print("\ncascading randomization, Spearman |relevance| after all layers "
              "(near 1: the method ignores the weights)")
        for (fw, method), value in sanity.items():
            print(f"  {fw:<6} {method:<28} {value}")
    if args.report:
        result.save_html(args.report)
        print(f"\nreport written to {args.report}")
    if args.json:
        payload = {"info": result.info, "accuracy": result.accuracy, "rows": result.rows(),
                   "sanity": {f"{fw}/{m}": v for (fw, m), v in (sanity or {}).items()}}
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    failed = [s for s in result.scores if s.status == "error"]
    return 1 if failed else 0


def _sanity(result, args) -> dict:
    from .clever_hans import explain_for_benchmark
    from .sanity import model_randomization

    out = {}
    for fw in result.frameworks:
        model = result.models[fw]
        layout = "channels_first" if fw == "torch" else "channels_last"
        x = result.data.to_layout(result.images, layout)
        for s in result.scores:
            if s.framework != fw or s.status != "ok":
                continue

            def explainer(net, inputs, target, _m=s.method):
                return explain_for_benchmark(net, inputs, _m, target, seed=args.seed)

            explainer.__name__ = s.method
            try:
                check = model_randomization(model, x, explainer, target=result.data.patch_class,
                                            seed=args.seed)
                out[(fw, s.method)] = f"{check.final:+.3f}"
            except Exception as error:  # report, keep going
                out[(fw, s.method)] = f"error: {error}"
    return out


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m crosslens.evaluate.cli``)."""
    parser = add_arguments(argparse.ArgumentParser(prog="crosslens evaluate", description=HELP))
    return run_evaluate(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
