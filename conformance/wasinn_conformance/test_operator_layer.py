"""Operator layer: ONNX's node tests through the witx ABI and WIT, against the library run natively and ONNX."""

from wasinn_conformance.plugin import run_case


def test_operator(operator_case, conformance_suite, request):
    run_case(conformance_suite, operator_case, request)
