"""The wasi-nn ABI front ends: witx for core modules, WIT for components, and the guest-memory access they share."""
