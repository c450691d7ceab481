"""Framework-free vocabulary and contracts: errors, targets, the method registry, the
``Backend`` / ``ArrayOps`` contracts and ``NumpyOps``, the ``Explanation`` result, input
structures, memory-budget chunking and image operations. Imports only numpy and the
standard library (checked by import-linter, see pyproject.toml)."""
