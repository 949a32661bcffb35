/*
 * abi_ext: conformance cases for the WasmEdge extensions of wasi_ephemeral_nn (unload,
 * finalize_execution_context, load_by_name_with_config, compute_single, get_output_single, fini_single).
 * It only instantiates on runtimes that provide them.
 */
#include "abi_common.h"

static int unload_ok(void) {
    nn_graph_t g;
    if (load_graph(&g)) return 1;
    EXPECT(nn_unload(g), NN_ERRNO_SUCCESS);
    return 0;
}

static int unload_twice(void) {
    nn_graph_t g;
    if (load_graph(&g)) return 1;
    EXPECT(nn_unload(g), NN_ERRNO_SUCCESS);
    EXPECT(nn_unload(g), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int unload_unknown(void) {
    EXPECT(nn_unload(777), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int init_after_unload(void) {
    nn_graph_t g;
    nn_context_t ctx;
    if (load_graph(&g)) return 1;
    EXPECT(nn_unload(g), NN_ERRNO_SUCCESS);
    EXPECT(nn_init_execution_context(g, &ctx), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int graph_handles_not_reused(void) {
    nn_graph_t a, b;
    if (load_graph(&a)) return 1;
    EXPECT(nn_unload(a), NN_ERRNO_SUCCESS);
    if (load_graph(&b)) return 1;
    if (a == b) FAIL("graph handle %u was reused after unload", a);
    return 0;
}

static int context_survives_unload(void) {
    nn_graph_t g;
    nn_context_t ctx;
    if (new_context(&g, &ctx)) return 1;
    EXPECT(nn_unload(g), NN_ERRNO_SUCCESS);
    return infer_scaled(ctx, 2);
}

static int finalize_ok(void) {
    nn_graph_t g;
    nn_context_t ctx;
    if (new_context(&g, &ctx)) return 1;
    EXPECT(nn_finalize_execution_context(ctx), NN_ERRNO_SUCCESS);
    return 0;
}

static int finalize_twice(void) {
    nn_graph_t g;
    nn_context_t ctx;
    if (new_context(&g, &ctx)) return 1;
    EXPECT(nn_finalize_execution_context(ctx), NN_ERRNO_SUCCESS);
    EXPECT(nn_finalize_execution_context(ctx), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int use_after_finalize(void) {
    nn_graph_t g;
    nn_context_t ctx;
    float y[6];
    uint32_t written;
    nn_tensor_t t = input_tensor();
    if (new_context(&g, &ctx)) return 1;
    EXPECT(nn_finalize_execution_context(ctx), NN_ERRNO_SUCCESS);
    EXPECT(nn_set_input(ctx, 0, &t), NN_ERRNO_INVALID_ARGUMENT);
    EXPECT(nn_compute(ctx), NN_ERRNO_INVALID_ARGUMENT);
    EXPECT(nn_get_output(ctx, 0, (uint8_t *)y, sizeof y, &written), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int context_handles_not_reused(void) {
    nn_graph_t g;
    nn_context_t a, b;
    if (new_context(&g, &a)) return 1;
    EXPECT(nn_finalize_execution_context(a), NN_ERRNO_SUCCESS);
    EXPECT(nn_init_execution_context(g, &b), NN_ERRNO_SUCCESS);
    if (a == b) FAIL("context handle %u was reused after finalize", a);
    return 0;
}

static int load_by_name_with_config_empty(void) {
    nn_graph_t g;
    nn_context_t ctx;
    EXPECT(nn_load_by_name_with_config(opt.name, (uint32_t)strlen(opt.name), "{}", 2, &g), NN_ERRNO_SUCCESS);
    EXPECT(nn_init_execution_context(g, &ctx), NN_ERRNO_SUCCESS);
    return infer_scaled(ctx, 1);
}

static int load_by_name_with_config_unknown(void) {
    nn_graph_t g;
    EXPECT(nn_load_by_name_with_config("no-such-model", 13, "{}", 2, &g), NN_ERRNO_NOT_FOUND);
    return 0;
}

static int load_by_name_with_config_bad_json(void) {
    nn_graph_t g;
    EXPECT(nn_load_by_name_with_config(opt.name, (uint32_t)strlen(opt.name), "{oops", 5, &g),
           NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int load_by_name_with_config_out_of_bounds(void) {
    nn_graph_t g;
    EXPECT(nn_load_by_name_with_config(opt.name, (uint32_t)strlen(opt.name), (const char *)mem_end() - 1, 8, &g),
           NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

WASI_NN_IMPORT("compute_single") int32_t nn_compute_single(nn_context_t ctx);
WASI_NN_IMPORT("get_output_single")
int32_t nn_get_output_single(nn_context_t ctx, uint32_t index, uint8_t *out, uint32_t out_max, uint32_t *written);
WASI_NN_IMPORT("fini_single") int32_t nn_fini_single(nn_context_t ctx);

static int streaming_unsupported(void) {
    nn_context_t ctx;
    float y[6];
    uint32_t written;
    nn_graph_t g;
    nn_tensor_t t = input_tensor();
    if (new_context(&g, &ctx)) return 1;
    EXPECT(nn_set_input(ctx, 0, &t), NN_ERRNO_SUCCESS);
    EXPECT2(nn_compute_single(ctx), NN_ERRNO_UNSUPPORTED_OPERATION, NN_ERRNO_INVALID_ARGUMENT);
    EXPECT2(nn_get_output_single(ctx, 0, (uint8_t *)y, sizeof y, &written), NN_ERRNO_UNSUPPORTED_OPERATION,
            NN_ERRNO_INVALID_ARGUMENT);
    EXPECT2(nn_fini_single(ctx), NN_ERRNO_UNSUPPORTED_OPERATION, NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int streaming_unknown_context(void) {
    EXPECT(nn_compute_single(4242), NN_ERRNO_INVALID_ARGUMENT);
    EXPECT(nn_fini_single(4242), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static const abi_case_t CASES[] = {
    {"unload", unload_ok},
    {"unload_twice", unload_twice},
    {"unload_unknown", unload_unknown},
    {"init_after_unload", init_after_unload},
    {"graph_handles_not_reused", graph_handles_not_reused},
    {"context_survives_unload", context_survives_unload},
    {"finalize", finalize_ok},
    {"finalize_twice", finalize_twice},
    {"use_after_finalize", use_after_finalize},
    {"context_handles_not_reused", context_handles_not_reused},
    {"load_by_name_with_config_empty", load_by_name_with_config_empty},
    {"load_by_name_with_config_unknown", load_by_name_with_config_unknown},
    {"load_by_name_with_config_bad_json", load_by_name_with_config_bad_json},
    {"load_by_name_with_config_out_of_bounds", load_by_name_with_config_out_of_bounds},
    {"streaming_unsupported", streaming_unsupported},
    {"streaming_unknown_context", streaming_unknown_context},
};

int main(int argc, char **argv) { return run_case(CASES, (int)(sizeof CASES / sizeof CASES[0]), argc, argv); }
