"""Post-install check run by ``make``: the environment must not hold conflicting packages.

Fails loudly when the installed set would break crosslens or its toolsets: legacy
``tf-keras`` (breaks tf-keras-vis on Keras 3), both ``tensorflow`` and ``tensorflow-cpu``
(they own the same files), or a CUDA build of torch pulled in by an unpinned dependency.
"""
from __future__ import annotations

import sys
from importlib import metadata


def problems() -> list[str]:
    """Human-readable problems with the current environment (empty when fine)."""
    installed = {dist.metadata["Name"].lower().replace("_", "-") for dist in metadata.distributions()}
    found = []
    if "tf-keras" in installed:
        found.append("tf-keras (legacy Keras) is installed: it breaks tf-keras-vis on Keras 3; "
                     "pip uninstall tf-keras")
    if {"tensorflow", "tensorflow-cpu"} <= installed:
        found.append("both tensorflow and tensorflow-cpu are installed (they own the same "
                     "files); keep one: pip uninstall tensorflow")
    if any(name.startswith("nvidia-") for name in installed) and "torch" in installed:
        version = metadata.version("torch")
        if "+cpu" not in version:
            found.append(f"torch {version} with CUDA packages was installed; pin the CPU "
                         "build with -c constraints.txt")
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(f"crosslens install check: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
