"""Backend layer: every model family × tensor type × format, against a float64 reference."""

from wasinn_conformance.plugin import run_case


def test_backend(backend_case, conformance_suite, request):
    run_case(conformance_suite, backend_case, request)
