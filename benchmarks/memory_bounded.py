"""Peak memory of path and perturbation methods on a 224×224 image (issue 3).

Each case runs in its own subprocess: a mid-size random-weight CNN (four 3×3 convs,
16-32-64-128 channels, strides 1-2-2-2, GAP, 1000-way linear; float32), one 224×224
image, then one ``cl.explain`` call. Reported: resident memory after the model and input
are ready (``setup``), the peak over the whole process (``peak``, ``ru_maxrss``), their
difference, and wall time. Usage::

    .venv/bin/python benchmarks/memory_bounded.py            # all cases
    .venv/bin/python benchmarks/memory_bounded.py ig_1024    # one case
"""
from __future__ import annotations

import json
import subprocess
import sys

CASES = {
    "ig_1024": ("integrated_gradients", {"steps": 1024}, None),
    "ig_1024_512MB": ("integrated_gradients", {"steps": 1024}, "512MB"),
    "layer_ig_1024": ("integrated_gradients", {"steps": 1024, "layer": "3"}, None),
    "occlusion_3025": ("occlusion", {"patch": 8, "stride": 4}, None),
    "occlusion_3025_512MB": ("occlusion", {"patch": 8, "stride": 4}, "512MB"),
    "rise_4000": ("rise", {"samples": 4000, "seed": 0}, None),
}

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
import crosslens as cl
method, options, budget = json.loads(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(2)
net = torch.nn.Sequential(
    torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(64, 128, 3, stride=2, padding=1), torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 1000)).eval()
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
with torch.no_grad():
    net(torch.tensor(x))
kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
setup = kib()
start = time.perf_counter()
exp = cl.explain(net, x, method, target=7, memory_budget=budget, **options)
elapsed = time.perf_counter() - start
backend = cl.backends.get_backend(net)
per_sample = backend.bytes_per_sample(backend.prepare(x))
print(json.dumps({"setup_mib": setup / 1024, "peak_mib": kib() / 1024,
                  "seconds": elapsed, "per_sample_mib": per_sample / 2**20,
                  "finite": bool(np.isfinite(exp.numpy()).all()),
                  "info": {k: str(v) for k, v in exp.info.items()}}))
"""


def run(name: str) -> dict:
    method, options, budget = CASES[name]
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps([method, options, budget])],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    for name in sys.argv[1:] or list(CASES):
        r = run(name)
        print(f"{name:22s} budget={CASES[name][2] or 'default':8s} setup={r['setup_mib']:7.0f} MiB "
              f"peak={r['peak_mib']:7.0f} MiB  delta={r['peak_mib'] - r['setup_mib']:6.0f} MiB  "
              f"{r['seconds']:6.1f} s  est/sample={r['per_sample_mib']:.1f} MiB  "
              f"finite={r['finite']}", flush=True)
