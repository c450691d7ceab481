"""The ``crosslens`` command.

::

    crosslens methods [--markdown]
    crosslens explain MODEL IMAGE --method integrated_gradients [--target 285]
                      [--layer NAME] [--option steps=64] --out ig.png
    crosslens compare MODEL IMAGE --method integrated_gradients \
                      --implementations crosslens captum --out cmp.png
    crosslens demo [--out out/demo]
    crosslens inspect MODEL --data DATA [--store DIR] [--port 8765] [--export page.html]
    crosslens demo --monitor [--out out/demo]   # the training monitor on Clever-Hans

MODEL is a ``.keras`` file (loaded with ``safe_mode``), a TorchScript ``.pt``, an
``.onnx`` file, or ``module:callable`` returning a model. Loading never unpickles
arbitrary objects.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

PREPROCESSING = {
    "unit": (0.0, 1.0),  # pixels in [0, 1]
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "lite": (127.0 / 255.0, 128.0 / 255.0),  # EfficientNet-Lite: (p - 127) / 128
    "255": (0.0, 1.0 / 255.0),  # pixels in [0, 255]
    "symmetric": (0.5, 0.5),  # pixels in [-1, 1]
}


def _option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"options are key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _target(text: str) -> Any:
    if text == "predicted":
        return text
    values = [int(v) for v in text.split(",")]
    return values[0] if len(values) == 1 else values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crosslens", description=(
        "Cross-framework neural-network introspection."))
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("methods", help="list the methods and the backends running them")
    listing.add_argument("--markdown", action="store_true", help="print a markdown table")

    explain = commands.add_parser("explain", help="explain a model's prediction on an image")
    _add_model_arguments(explain)
    explain.add_argument("--save-array", help="also save the raw attributions (.npy)")
    explain.add_argument("--implementation", default="crosslens",
                         help="crosslens, captum, tf-keras-vis or zennit")

    compare = commands.add_parser("compare", help="run several implementations of a method "
                                  "and report their agreement")
    _add_model_arguments(compare)
    compare.add_argument("--implementations", nargs="+", default=["crosslens", "captum"],
                         help="crosslens, captum, tf-keras-vis, zennit")
    compare.set_defaults(out="comparison.png")

    demo = commands.add_parser("demo", help="the EfficientNet-Lite0 demo on bundled photos")
    demo.add_argument("--out", default="out/demo")
    demo.add_argument("--methods", nargs="*", help="subset of methods (default: all)")
    demo.add_argument("--no-featurevis", action="store_true",
                      help="skip the feature-visualization panel")
    demo.add_argument("--monitor", action="store_true",
                      help="instead: train the Clever-Hans CNN in PyTorch and Keras with the "
                      "training monitor (TensorBoard + visual log under OUT/monitor)")

    run = commands.add_parser("run", help="explain a whole data set into a resumable store")
    run.add_argument("model", help=".keras, TorchScript .pt, .onnx, or module:callable")
    run.add_argument("data", help=".npy / .npz file, image folder (sub-folders = classes), "
                     "or a bundled set: digits, clever_hans, photos")
    run.add_argument("--method", action="append", required=True, help="repeatable")
    run.add_argument("--layer", action="append", default=[], help="repeatable")
    run.add_argument("--out", required=True, help="the store's directory")
    run.add_argument("--engine", default="local", choices=("local", "ray"),
                     help="local (this process) or ray (worker actors)")
    run.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    run.add_argument("--workers", type=int, default=2, help="Ray worker actors")
    run.add_argument("--resume", action="store_true", help="complete an interrupted run")
    run.add_argument("--batch-size", type=int, help="samples per shard (default 32)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--target", default="predicted",
                     help="'predicted', 'label' or a class index")
    run.add_argument("--option", type=_option, action="append", default=[],
                     metavar="[METHOD.]KEY=VALUE",
                     help="method option (for every method that has it, or METHOD.KEY)")
    run.add_argument("--size", type=int, help="square image size (folders, photos)")
    run.add_argument("--preprocess", choices=sorted(PREPROCESSING),
                     help="pixel normalization (folders, photos; default: [0, 1])")
    run.add_argument("--float16", action="store_true", help="store attributions as float16")
    run.add_argument("--full-maps", action="store_true", help="also store full activation maps")
    run.add_argument("--memory-budget", help="per call, e.g. 2GB")

    inspect = commands.add_parser("inspect", help="explore a model over a data set in the "
                                  "browser (the inspection page), or --export it")
    inspect.add_argument("model", help=".keras, TorchScript .pt, .onnx, or module:callable")
    inspect.add_argument("--data", required=True, help="as for `crosslens run`: .npy / .npz, "
                         "image folder, or digits, clever_hans, photos")
    inspect.add_argument("--store", help="the dataset store (computed when missing; default "
                         "~/.cache/crosslens/inspect/<model>-<data>)")
    inspect.add_argument("--port", type=int, default=8765)
    inspect.add_argument("--host", default="127.0.0.1",
                         help="interface to listen on (default: this machine only)")
    inspect.add_argument("--frames", help="a folder of images, an animated image or a short "
                         "video file (MP4, WebM, ...) to step through in the Live view")
    inspect.add_argument("--export", metavar="PAGE.html",
                         help="write a self-contained static page instead of serving")
    inspect.add_argument("--layer", action="append", default=None,
                         help="layer kept in the store, repeatable (default: chosen)")
    inspect.add_argument("--size", type=int, help="square image size (folders, photos)")
    inspect.add_argument("--preprocess", choices=sorted(PREPROCESSING),
                         help="pixel normalization (folders, photos, uploads)")
    inspect.add_argument("--open", action="store_true", help="open the page in a browser")
    inspect.add_argument("--modality", choices=["image", "text", "tabular", "series"],
                         help="kind of data (default: detected)")
    inspect.add_argument("--tokens", metavar="VOCAB",
                         help="text: a JSON vocabulary (list of tokens, or id -> token) or "
                         "a text file with one token per line")
    inspect.add_argument("--feature-names", help="tabular: comma-separated feature names")
    inspect.add_argument("--channel-names", help="series: comma-separated channel names")
    inspect.add_argument("--series-layout", choices=["channels_first", "time_first"],
                         help="series: (N, C, T) or (N, T, C) (default: detected)")
    inspect.add_argument("--featurevis", type=int, default=0, metavar="N",
                         help="first compute the feature visualizations of the N most "
                         "varying channels of each layer (cached in the store)")

    _add_optional_commands(commands)
    return parser


def run_inspect(args: argparse.Namespace) -> int:
    from .inspector import Inspector, export_html, inspect

    inspector = Inspector(args.model, args.data, args.store, layers=args.layer,
                          frames=args.frames, size=args.size, preprocess=args.preprocess,
                          modality=args.modality, tokens=_vocabulary(args.tokens),
                          feature_names=_names(args.feature_names),
                          channel_names=_names(args.channel_names),
                          series_layout=args.series_layout)
    if args.featurevis:
        inspector.precompute_featurevis(args.featurevis)
    if args.export:
        print(f"wrote {export_html(inspector, args.export)}")
        return 0
    inspect(inspector, port=args.port, host=args.host, open_browser=args.open, block=True)
    return 0


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",")]


def _vocabulary(path: str | None) -> Any:
    """``--tokens``: a JSON list, a JSON object (id -> token, or token -> id as in a
    tokenizer's ``vocab.json``), or a text file with one token per line."""
    if path is None:
        return None
    from .core.errors import InputError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"--tokens {path!r} cannot be read ({error})") from None
    if path.lower().endswith(".json"):
        try:
            vocabulary = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"--tokens {path!r} is not valid JSON ({error})") from None
        if isinstance(vocabulary, dict):
            if all(str(k).isdigit() for k in vocabulary):  # id -> token
                return {int(k): str(v) for k, v in vocabulary.items()}
            return {int(v): str(k) for k, v in vocabulary.items()}  # vocab.json: token -> id
        return [str(token) for token in vocabulary]
    return text.splitlines()


def _method_options(methods: list[str], options: list[tuple[str, Any]]) -> dict[str, dict]:
    """``--option`` values by method: ``METHOD.KEY=V`` for one, ``KEY=V`` for every method
    that has option ``KEY`` (an error when none has it)."""
    from .core.errors import OptionError
    from .core.registry import get_method
    specs = {name: get_method(name) for name in methods}
    plan: dict[str, dict] = {name: {} for name in methods}
    for key, value in options:
        scope, _, option = key.rpartition(".")
        if scope:
            match = [n for n, s in specs.items() if scope in (n, s.name)]
            if not match:
                raise OptionError(f"--option {key}: {scope!r} is not one of the run's methods "
                                  f"{methods}")
            plan[match[0]][option] = value
            continue
        having = [n for n, s in specs.items() if option in s.options]
        if not having:
            raise OptionError(f"--option {key}: none of the methods {methods} has an option "
                              f"{option!r}")
        for name in having:
            plan[name][option] = value
    return plan


def run_dataset(args: argparse.Namespace) -> int:
    import crosslens as cl
    from crosslens.loading import load_model

    model = load_model(args.model)
    target = int(args.target) if args.target.lstrip("-").isdigit() else args.target
    store = cl.explain_dataset(
        model, args.data, _method_options(args.method, args.option), args.layer,
        target=target, out=args.out, engine=args.engine, batch_size=args.batch_size,
        seed=args.seed, resume=args.resume,
        size=None if args.size is None else (args.size, args.size),
        preprocess=args.preprocess, float16=args.float16, full_maps=args.full_maps,
        memory_budget=args.memory_budget, address=args.address, workers=args.workers)
    print(store)
    return 0


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=".keras, TorchScript .pt, .onnx, or module:callable")
    parser.add_argument("image", help="image file, or a scikit-image sample name (chelsea)")
    parser.add_argument("--method", default="saliency")
    parser.add_argument("--target", type=_target, default="predicted",
                        help="class index, comma-separated indices, or 'predicted'")
    parser.add_argument("--layer", help="layer name for layer methods")
    parser.add_argument("--size", type=int, default=224, help="square input size")
    parser.add_argument("--preprocess", choices=sorted(PREPROCESSING), default="imagenet",
                        help="pixel normalization the model expects")
    parser.add_argument("--option", type=_option, action="append", default=[],
                        metavar="KEY=VALUE", help="method option, repeatable")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="explanation.png", help="PNG to write")


def _add_optional_commands(commands: Any) -> None:
    """Subcommands owned by optional subpackages (evaluation, comparison)."""
    try:
        from .evaluate.cli import add_arguments as add_evaluate
    except ImportError:
        return
    add_evaluate(commands.add_parser("evaluate", help="evaluate attribution methods"))


def _model_and_batch(args: argparse.Namespace) -> tuple[Any, np.ndarray]:
    from crosslens.backends import get_backend
    from crosslens.loading import load_model
    from crosslens.zoo import load_image

    model = load_model(args.model)
    image = load_image(args.image, args.size)
    mean, std = (np.asarray(v, dtype=np.float32) for v in PREPROCESSING[args.preprocess])
    batch = ((image - mean) / std)[None].astype(np.float32)
    if get_backend(model).layout == "channels_first":
        batch = np.ascontiguousarray(np.transpose(batch, (0, 3, 1, 2)))
    return model, batch


def run_compare(args: argparse.Namespace) -> int:
    import crosslens as cl

    model, batch = _model_and_batch(args)
    comparison = cl.compare(model, batch, args.method, implementations=args.implementations,
                            target=args.target, layer=args.layer, seed=args.seed,
                            **dict(args.option))
    print(comparison)
    comparison.save(args.out)
    print(f"wrote {args.out}")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    import crosslens as cl

    model, batch = _model_and_batch(args)
    exp = cl.explain(model, batch, args.method, target=args.target, layer=args.layer,
                     seed=args.seed, implementation=args.implementation, **dict(args.option))
    exp.inputs = batch  # shown as the model saw it; the viz rescales for display
    exp.save(args.out)
    if args.save_array:
        np.save(args.save_array, exp.numpy())
    print(f"{exp.method}: target {exp.target}, wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .core.errors import CrosslensError

    try:
        if args.command == "methods":
            import crosslens as cl
            table = cl.methods()
            print(table.markdown() if args.markdown else repr(table))
            return 0
        if args.command == "explain":
            return run_explain(args)
        if args.command == "compare":
            return run_compare(args)
        if args.command == "run":
            return run_dataset(args)
        if args.command == "inspect":
            return run_inspect(args)
        if args.command == "demo" and args.monitor:
            from .monitor.demo import run as run_monitor
            run_monitor(Path(args.out) / "monitor")
            return 0
        if args.command == "demo":
            from .demo import run
            run(args.out, args.methods, featurevis=not args.no_featurevis)
            return 0
        if args.command == "evaluate":
            from .evaluate.cli import run_evaluate
            return run_evaluate(args)
    except CrosslensError as error:
        print(f"crosslens: error: {error}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
