"""ABI layer: every wasi_ephemeral_nn function and errno, from real wasm guests."""

from wasinn_conformance.plugin import run_case


def test_abi(abi_case, conformance_suite, request):
    run_case(conformance_suite, abi_case, request)
