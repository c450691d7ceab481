"""Translation report and verification result dataclasses."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass
class Metrics:
    """Agreement of a translated array ``a`` with the original ``b``."""

    max_abs: float
    rel: float  # max|a-b| / max|b|
    cosine: float

    def to_dict(self):
        return dataclasses.asdict(self)

    def __str__(self):
        return f"max|Δ|={self.max_abs:.3g} rel={self.rel:.3g} cos={self.cosine:.6f}"


@dataclasses.dataclass
class ProbeResult:
    index: int
    kind: str  # "example" | "random"
    output: Metrics
    grad_sum: Metrics  # gradient of the sum of the outputs w.r.t. the input
    grad_class: Metrics  # gradient of one class logit (argmax of the original) w.r.t. the input
    class_index: list

    def to_dict(self):
        return {
            "index": self.index,
            "kind": self.kind,
            "output": self.output.to_dict(),
            "grad_sum": self.grad_sum.to_dict(),
            "grad_class": self.grad_class.to_dict(),
            "class_index": list(self.class_index),
        }

    @classmethod
    def from_dict(cls, d):
        return cls(
            d["index"],
            d["kind"],
            Metrics(**d["output"]),
            Metrics(**d["grad_sum"]),
            Metrics(**d["grad_class"]),
            d.get("class_index", []),
        )


@dataclasses.dataclass
class Verification:
    probes: list
    tolerance: dict  # {"output": rel, "gradient": rel}
    passed: bool
    worst: dict  # {"output": Metrics, "grad_sum": Metrics, "grad_class": Metrics}
    seconds: float = 0.0
    from_cache: bool = False

    def to_dict(self):
        return {
            "probes": [p.to_dict() for p in self.probes],
            "tolerance": dict(self.tolerance),
            "passed": self.passed,
            "worst": {k: v.to_dict() for k, v in self.worst.items()},
            "seconds": self.seconds,
            "from_cache": self.from_cache,
        }

    @classmethod
    def from_dict(cls, d):
        return cls(
            [ProbeResult.from_dict(p) for p in d["probes"]],
            d["tolerance"],
            d["passed"],
            {k: Metrics(**v) for k, v in d["worst"].items()},
            d.get("seconds", 0.0),
            d.get("from_cache", False),
        )

    def failures(self) -> list[str]:
        out = []
        tol_o, tol_g = self.tolerance["output"], self.tolerance["gradient"]
        tol_c = self.tolerance.get("cosine", -1.0)
        if not self.worst["output"].rel <= tol_o:
            out.append(f"outputs: {self.worst['output']} > tolerance rel {tol_o:g}")
        for key, label in (("grad_sum", "input-gradient of sum(outputs)"), ("grad_class", "input-gradient of class logit")):
            if not self.worst[key].rel <= tol_g:
                out.append(f"{label}: {self.worst[key]} > tolerance rel {tol_g:g}")
            elif key == "grad_class" and not self.worst[key].cosine >= tol_c:
                out.append(f"{label}: {self.worst[key]} < tolerance cosine {tol_c:g}")
        return out


@dataclasses.dataclass
class TranslationReport:
    source: str  # "torch" | "keras"
    target: str
    model_name: str
    seconds: float  # wall time of translate() (cache hit: loading)
    onnx_opset: int
    op_counts: dict
    converter_versions: dict
    verification: Verification | None = None
    export_method: str = ""
    timings: dict = dataclasses.field(default_factory=dict)
    cache_hit: bool = False
    cache_key: str | None = None
    cache_path: str | None = None
    input_layout: dict = dataclasses.field(default_factory=dict)  # {"original": "NCHW", "translated": "NHWC"}
    n_mapped_layers: int = 0
    warnings: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["verification"] = None if self.verification is None else self.verification.to_dict()
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        v = d.pop("verification", None)
        return cls(**d, verification=None if v is None else Verification.from_dict(v))

    def __str__(self) -> str:
        lines = [
            f"Translation {self.source} -> {self.target} of {self.model_name!r}"
            + (" [cache hit]" if self.cache_hit else ""),
            f"  time: {self.seconds:.2f} s"
            + (
                " (" + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items()) + ")"
                if self.timings
                else ""
            ),
            f"  export: {self.export_method}; ONNX opset {self.onnx_opset}",
            (
                f"  layout: input {self.input_layout.get('original')} -> {self.input_layout.get('translated')}; "
                if self.input_layout.get("original") not in (None, "-")
                else "  layout: unchanged (no spatial input); "
            )
            + f"{self.n_mapped_layers} layers mapped",
            "  ops: " + ", ".join(f"{k}×{v}" for k, v in self.op_counts.items()),
            "  converters: " + ", ".join(f"{k} {v}" for k, v in self.converter_versions.items()),
        ]
        v = self.verification
        if v is not None:
            status = "PASSED" if v.passed else "FAILED"
            lines.append(
                f"  verification: {status} on {len(v.probes)} probes"
                + (" (stored result)" if v.from_cache else f" in {v.seconds:.2f} s")
                + f"; tolerance rel output {v.tolerance['output']:g}, gradient {v.tolerance['gradient']:g}"
                + (f", cosine ≥ {v.tolerance['cosine']:g}" if "cosine" in v.tolerance else "")
            )
            lines.append(f"    outputs        {v.worst['output']}")
            lines.append(f"    grad sum(out)  {v.worst['grad_sum']}")
            lines.append(f"    grad class     {v.worst['grad_class']}")
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        if self.cache_path:
            lines.append(f"  cache: {self.cache_path}")
        return "\n".join(lines)
