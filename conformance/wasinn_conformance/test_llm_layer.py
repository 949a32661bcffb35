"""LLM layer: WasmEdge's GGML call semantics on every backend claiming ggml."""

from wasinn_conformance.plugin import run_case


def test_llm(llm_case, conformance_suite, request):
    run_case(conformance_suite, llm_case, request)
