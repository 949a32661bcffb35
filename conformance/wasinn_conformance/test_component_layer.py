"""Component layer: wasi:nn (WIT) in both versions, from generated WAT components."""

from wasinn_conformance.plugin import run_case


def test_component(component_case, conformance_suite, request):
    run_case(conformance_suite, component_case, request)
