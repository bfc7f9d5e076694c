"""CPU benchmarks, run from the repository root: ``python -m bench.bench_restore`` (see each module's docstring)."""
