"""Benchmarks of wasinn against native libraries and the wasmtime CLI (`python -m benchmarks`)."""
