/*
 * abi: conformance cases for the six wasi_ephemeral_nn functions of the spec (no extensions, so it
 * instantiates on every runtime). See abi_common.h for the protocol; the expectations of every case are
 * documented in docs/conformance.md.
 */
#include "abi_common.h"

/* -- load ------------------------------------------------------------------------------------- */

static int load_ok(void) {
    nn_graph_t g = 0xFFFFFFFF;
    if (load_graph(&g)) return 1;
    if (g == 0xFFFFFFFF) FAIL("load succeeded but did not write the graph handle");
    return 0;
}

static int load_handles_distinct(void) {
    nn_graph_t g[3];
    for (int i = 0; i < 3; i++)
        if (load_graph(&g[i])) return 1;
    if (g[0] == g[1] || g[1] == g[2] || g[0] == g[2]) FAIL("graph handles %u %u %u are not distinct", g[0], g[1], g[2]);
    if (!(g[0] < g[1] && g[1] < g[2])) FAIL("graph handles %u %u %u do not increase", g[0], g[1], g[2]);
    return 0;
}

static int load_unknown_encoding(void) {
    nn_graph_t g;
    EXPECT(nn_load(opt.builders, opt.n_builders, 99, (uint32_t)opt.target, &g), NN_ERRNO_INVALID_ENCODING);
    return 0;
}

static int load_unsupported_encoding(void) {
    nn_graph_t g;
    EXPECT(nn_load(opt.builders, opt.n_builders, (uint32_t)opt.unsupported_encoding, (uint32_t)opt.target, &g),
           NN_ERRNO_INVALID_ENCODING);
    return 0;
}

static int load_zero_builders(void) {
    nn_graph_t g;
    EXPECT(nn_load(opt.builders, 0, (uint32_t)opt.encoding, (uint32_t)opt.target, &g), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int load_extra_builder(void) {
    nn_graph_builder_t b[3] = {opt.builders[0], opt.builders[1], opt.builders[0]};
    b[opt.n_builders] = opt.builders[0];
    nn_graph_t g;
    EXPECT(nn_load(b, opt.n_builders + 1, (uint32_t)opt.encoding, (uint32_t)opt.target, &g),
           NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int load_builder_out_of_bounds(void) {
    nn_graph_builder_t b[2] = {opt.builders[0], opt.builders[1]};
    b[0].buf = mem_end() - 16;
    b[0].len = 4096;
    nn_graph_t g;
    EXPECT(nn_load(b, opt.n_builders, (uint32_t)opt.encoding, (uint32_t)opt.target, &g), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int load_builder_array_out_of_bounds(void) {
    nn_graph_t g;
    EXPECT(nn_load((const nn_graph_builder_t *)(mem_end() - 4), 2, (uint32_t)opt.encoding, (uint32_t)opt.target, &g),
           NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int load_graph_out_of_bounds(void) {
    EXPECT(nn_load(opt.builders, opt.n_builders, (uint32_t)opt.encoding, (uint32_t)opt.target,
                   (nn_graph_t *)(mem_end() - 2)),
           NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int load_unknown_target(void) {
    nn_graph_t g;
    EXPECT(nn_load(opt.builders, opt.n_builders, (uint32_t)opt.encoding, 9, &g), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int load_unavailable_target(void) {
    nn_graph_t g;
    EXPECT(nn_load(opt.builders, opt.n_builders, (uint32_t)opt.encoding, (uint32_t)opt.unavailable_target, &g),
           NN_ERRNO_UNSUPPORTED_OPERATION);
    return 0;
}

static int load_corrupt_model(void) {
    static uint8_t junk[4096];
    for (unsigned i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 131u + 7u);
    nn_graph_builder_t b[2] = {{junk, sizeof junk}, {junk, sizeof junk}};
    nn_graph_t g;
    EXPECT2(nn_load(b, opt.n_builders, (uint32_t)opt.encoding, (uint32_t)opt.target, &g), NN_ERRNO_RUNTIME_ERROR,
            NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int load_truncated_model(void) {
    nn_graph_builder_t b[2] = {opt.builders[0], opt.builders[1]};
    b[0].len /= 2;
    nn_graph_t g;
    EXPECT2(nn_load(b, opt.n_builders, (uint32_t)opt.encoding, (uint32_t)opt.target, &g), NN_ERRNO_RUNTIME_ERROR,
            NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

/* -- load_by_name -------------------------------------------------------------------------------- */

static int load_by_name_ok(void) {
    nn_graph_t g;
    nn_context_t ctx;
    EXPECT(nn_load_by_name(opt.name, (uint32_t)strlen(opt.name), &g), NN_ERRNO_SUCCESS);
    EXPECT(nn_init_execution_context(g, &ctx), NN_ERRNO_SUCCESS);
    return infer_scaled(ctx, 1);
}

static int load_by_name_unknown(void) {
    nn_graph_t g;
    EXPECT(nn_load_by_name("no-such-model", 13, &g), NN_ERRNO_NOT_FOUND);
    return 0;
}

static int load_by_name_out_of_bounds(void) {
    nn_graph_t g;
    EXPECT(nn_load_by_name((const char *)mem_end() - 3, 12, &g), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

/* -- init_execution_context ---------------------------------------------------------------------- */

static int init_ok(void) {
    nn_graph_t g;
    nn_context_t ctx = 0xFFFFFFFF;
    if (new_context(&g, &ctx)) return 1;
    if (ctx == 0xFFFFFFFF) FAIL("init_execution_context succeeded but did not write the handle");
    return 0;
}

static int init_unknown_graph(void) {
    nn_context_t ctx;
    EXPECT(nn_init_execution_context(12345, &ctx), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int init_out_of_bounds(void) {
    nn_graph_t g;
    if (load_graph(&g)) return 1;
    EXPECT(nn_init_execution_context(g, (nn_context_t *)(mem_end() - 1)), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int context_handles_distinct(void) {
    nn_graph_t g;
    nn_context_t c[4];
    if (load_graph(&g)) return 1;
    for (int i = 0; i < 4; i++) EXPECT(nn_init_execution_context(g, &c[i]), NN_ERRNO_SUCCESS);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            if (c[i] == c[j]) FAIL("context handles %u and %u are equal", c[i], c[j]);
    return 0;
}

/* -- set_input ------------------------------------------------------------------------------------- */

static int inference(void) {
    nn_graph_t g;
    nn_context_t ctx;
    return new_context(&g, &ctx) || infer_scaled(ctx, 1);
}

static int set_input_unknown_context(void) {
    nn_tensor_t t = input_tensor();
    EXPECT(nn_set_input(54321, 0, &t), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

#define SET_INPUT_CASE(fn, mutate, want)                 \
    static int fn(void) {                                \
        nn_graph_t g;                                    \
        nn_context_t ctx;                                \
        if (new_context(&g, &ctx)) return 1;             \
        nn_tensor_t t = input_tensor();                  \
        mutate;                                          \
        EXPECT(nn_set_input(ctx, 0, &t), want);          \
        return 0;                                        \
    }

SET_INPUT_CASE(set_input_data_out_of_bounds, t.data = mem_end() - 8, NN_ERRNO_INVALID_ARGUMENT)
SET_INPUT_CASE(set_input_dims_out_of_bounds, t.dims = (const uint32_t *)(mem_end() - 4), NN_ERRNO_INVALID_ARGUMENT)
SET_INPUT_CASE(set_input_data_too_short, t.data_len -= 4, NN_ERRNO_INVALID_ARGUMENT)
SET_INPUT_CASE(set_input_data_too_long, t.data_len += 4, NN_ERRNO_INVALID_ARGUMENT)
SET_INPUT_CASE(set_input_unknown_type, t.type = 6, NN_ERRNO_INVALID_ARGUMENT)

static int set_input_bad_index(void) {
    nn_graph_t g;
    nn_context_t ctx;
    if (new_context(&g, &ctx)) return 1;
    nn_tensor_t t = input_tensor();
    EXPECT(nn_set_input(ctx, 7, &t), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int set_input_tensor_out_of_bounds(void) {
    nn_graph_t g;
    nn_context_t ctx;
    if (new_context(&g, &ctx)) return 1;
    EXPECT(nn_set_input(ctx, 0, (const nn_tensor_t *)(mem_end() - 10)), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int set_input_wrong_type(void) {
    static const int32_t xi[6] = {0, 1, 2, 3, 4, 5};
    nn_graph_t g;
    nn_context_t ctx;
    if (new_context(&g, &ctx)) return 1;
    nn_tensor_t t = {DIMS, 2, NN_TENSOR_I32, (const uint8_t *)xi, sizeof xi};
    int32_t e = nn_set_input(ctx, 0, &t);
    if (e == NN_ERRNO_SUCCESS) e = nn_compute(ctx); /* a runtime may only notice at compute */
    if (e != NN_ERRNO_INVALID_ARGUMENT) FAIL("an i32 tensor for an f32 input gave %d (%s), expected invalid_argument",
                                             (int)e, nn_strerror(e));
    return 0;
}

static int set_input_wrong_shape(void) {
    static const uint32_t dims[2] = {3, 2};
    nn_graph_t g;
    nn_context_t ctx;
    if (new_context(&g, &ctx)) return 1;
    nn_tensor_t t = {dims, 2, NN_TENSOR_F32, (const uint8_t *)X, sizeof X};
    int32_t e = nn_set_input(ctx, 0, &t);
    if (e == NN_ERRNO_SUCCESS) e = nn_compute(ctx);
    if (e != NN_ERRNO_INVALID_ARGUMENT) FAIL("a 3x2 tensor for a 2x3 input gave %d (%s), expected invalid_argument",
                                             (int)e, nn_strerror(e));
    return 0;
}

/* The tensor record's type is one byte; the three bytes after it are padding that guests leave dirty. */
typedef struct {
    const uint32_t *dims;
    uint32_t dims_len;
    uint8_t type, pad[3];
    const uint8_t *data;
    uint32_t data_len;
} dirty_tensor_t;

static int set_input_padding_garbage(void) {
    nn_graph_t g;
    nn_context_t ctx;
    float y[6];
    uint32_t written;
    if (new_context(&g, &ctx)) return 1;
    dirty_tensor_t t = {DIMS, 2, NN_TENSOR_F32, {0xFF, 0xAB, 0x01}, (const uint8_t *)X, sizeof X};
    EXPECT(nn_set_input(ctx, 0, (const nn_tensor_t *)&t), NN_ERRNO_SUCCESS);
    EXPECT(nn_compute(ctx), NN_ERRNO_SUCCESS);
    EXPECT(nn_get_output(ctx, 0, (uint8_t *)y, sizeof y, &written), NN_ERRNO_SUCCESS);
    if (y[5] < 12.99f || y[5] > 13.01f) FAIL("output[5] = %g, expected 13", (double)y[5]);
    return 0;
}

/* -- compute ---------------------------------------------------------------------------------------- */

static int compute_unknown_context(void) {
    EXPECT(nn_compute(54321), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int compute_without_input(void) {
    nn_graph_t g;
    nn_context_t ctx;
    if (new_context(&g, &ctx)) return 1;
    EXPECT2(nn_compute(ctx), NN_ERRNO_INVALID_ARGUMENT, NN_ERRNO_RUNTIME_ERROR);
    return 0;
}

static int repeated_compute(void) {
    nn_graph_t g;
    nn_context_t ctx;
    if (new_context(&g, &ctx)) return 1;
    for (int i = 0; i < 10; i++)
        if (infer_scaled(ctx, (float)i)) return 1;
    return 0;
}

static int many_contexts(void) {
    nn_graph_t g;
    nn_context_t c[8];
    if (load_graph(&g)) return 1;
    for (int i = 0; i < 8; i++) EXPECT(nn_init_execution_context(g, &c[i]), NN_ERRNO_SUCCESS);
    for (int round = 0; round < 2; round++)
        for (int i = 7; i >= 0; i--)
            if (infer_scaled(c[i], (float)(i + round))) return 1;
    return 0;
}

static int many_graphs(void) {
    nn_graph_t g[8];
    nn_context_t c[8];
    for (int i = 0; i < 8; i++) {
        if (load_graph(&g[i])) return 1;
        EXPECT(nn_init_execution_context(g[i], &c[i]), NN_ERRNO_SUCCESS);
    }
    for (int i = 0; i < 8; i++)
        if (infer_scaled(c[i], (float)i)) return 1;
    return 0;
}

/* -- get_output ------------------------------------------------------------------------------------- */

static int computed_context(nn_context_t *ctx) {
    nn_graph_t g;
    nn_tensor_t t = input_tensor();
    if (new_context(&g, ctx)) return 1;
    EXPECT(nn_set_input(*ctx, 0, &t), NN_ERRNO_SUCCESS);
    EXPECT(nn_compute(*ctx), NN_ERRNO_SUCCESS);
    return 0;
}

static int get_output_ok(void) {
    nn_graph_t g;
    nn_context_t ctx;
    return new_context(&g, &ctx) || infer_scaled(ctx, 3);
}

static int get_output_too_small(void) {
    nn_context_t ctx;
    uint8_t buf[64];
    uint32_t written = 0;
    if (computed_context(&ctx)) return 1;
    memset(buf, 0xAA, sizeof buf);
    EXPECT(nn_get_output(ctx, 0, buf, 10, &written), NN_ERRNO_TOO_LARGE);
    if (written != 24) FAIL("too_large wrote bytes_written = %u, expected the required size 24", written);
    for (unsigned i = 10; i < sizeof buf; i++)
        if (buf[i] != 0xAA) FAIL("get_output wrote past the buffer it was given (byte %u)", i);
    return 0;
}

static int get_output_zero_buffer(void) {
    nn_context_t ctx;
    uint32_t written = 0;
    uint8_t buf[1];
    if (computed_context(&ctx)) return 1;
    EXPECT(nn_get_output(ctx, 0, buf, 0, &written), NN_ERRNO_TOO_LARGE);
    if (written != 24) FAIL("too_large wrote bytes_written = %u, expected the required size 24", written);
    return 0;
}

static int get_output_buffer_out_of_bounds(void) {
    nn_context_t ctx;
    uint32_t written;
    if (computed_context(&ctx)) return 1;
    EXPECT(nn_get_output(ctx, 0, mem_end() - 8, 24, &written), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int get_output_written_out_of_bounds(void) {
    nn_context_t ctx;
    float y[6];
    if (computed_context(&ctx)) return 1;
    EXPECT(nn_get_output(ctx, 0, (uint8_t *)y, sizeof y, (uint32_t *)(mem_end() - 2)), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int get_output_bad_index(void) {
    nn_context_t ctx;
    float y[6];
    uint32_t written;
    if (computed_context(&ctx)) return 1;
    EXPECT(nn_get_output(ctx, 9, (uint8_t *)y, sizeof y, &written), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int get_output_unknown_context(void) {
    float y[6];
    uint32_t written;
    EXPECT(nn_get_output(54321, 0, (uint8_t *)y, sizeof y, &written), NN_ERRNO_INVALID_ARGUMENT);
    return 0;
}

static int get_output_before_compute(void) {
    nn_graph_t g;
    nn_context_t ctx;
    float y[6];
    uint32_t written;
    if (new_context(&g, &ctx)) return 1;
    EXPECT2(nn_get_output(ctx, 0, (uint8_t *)y, sizeof y, &written), NN_ERRNO_INVALID_ARGUMENT,
            NN_ERRNO_RUNTIME_ERROR);
    return 0;
}

/* -- limits ------------------------------------------------------------------------------------------- */

static int graph_limit(void) {
    nn_graph_t g;
    for (int i = 0; i < 64; i++) {
        int32_t e = nn_load(opt.builders, opt.n_builders, (uint32_t)opt.encoding, (uint32_t)opt.target, &g);
        if (e == NN_ERRNO_BUSY) return 0;
        if (e != NN_ERRNO_SUCCESS) FAIL("load %d returned %d (%s) before any busy", i, (int)e, nn_strerror(e));
    }
    FAIL("64 live graphs and no busy: is a graph limit configured?");
}

static int tensor_limit(void) {
    static float big[512 * 1024];
    static const uint32_t dims[2] = {512, 1024};
    nn_graph_t g;
    nn_context_t ctx;
    if (new_context(&g, &ctx)) return 1;
    nn_tensor_t t = {dims, 2, NN_TENSOR_F32, (const uint8_t *)big, sizeof big};
    EXPECT(nn_set_input(ctx, 0, &t), NN_ERRNO_TOO_LARGE);
    return 0;
}

static const abi_case_t CASES[] = {
    {"load", load_ok},
    {"load_handles_distinct", load_handles_distinct},
    {"load_unknown_encoding", load_unknown_encoding},
    {"load_unsupported_encoding", load_unsupported_encoding},
    {"load_zero_builders", load_zero_builders},
    {"load_extra_builder", load_extra_builder},
    {"load_builder_out_of_bounds", load_builder_out_of_bounds},
    {"load_builder_array_out_of_bounds", load_builder_array_out_of_bounds},
    {"load_graph_out_of_bounds", load_graph_out_of_bounds},
    {"load_unknown_target", load_unknown_target},
    {"load_unavailable_target", load_unavailable_target},
    {"load_corrupt_model", load_corrupt_model},
    {"load_truncated_model", load_truncated_model},
    {"load_by_name", load_by_name_ok},
    {"load_by_name_unknown", load_by_name_unknown},
    {"load_by_name_out_of_bounds", load_by_name_out_of_bounds},
    {"init", init_ok},
    {"init_unknown_graph", init_unknown_graph},
    {"init_out_of_bounds", init_out_of_bounds},
    {"context_handles_distinct", context_handles_distinct},
    {"inference", inference},
    {"set_input_unknown_context", set_input_unknown_context},
    {"set_input_tensor_out_of_bounds", set_input_tensor_out_of_bounds},
    {"set_input_dims_out_of_bounds", set_input_dims_out_of_bounds},
    {"set_input_data_out_of_bounds", set_input_data_out_of_bounds},
    {"set_input_data_too_short", set_input_data_too_short},
    {"set_input_data_too_long", set_input_data_too_long},
    {"set_input_unknown_type", set_input_unknown_type},
    {"set_input_wrong_type", set_input_wrong_type},
    {"set_input_wrong_shape", set_input_wrong_shape},
    {"set_input_bad_index", set_input_bad_index},
    {"set_input_padding_garbage", set_input_padding_garbage},
    {"compute_unknown_context", compute_unknown_context},
    {"compute_without_input", compute_without_input},
    {"repeated_compute", repeated_compute},
    {"many_contexts", many_contexts},
    {"many_graphs", many_graphs},
    {"get_output", get_output_ok},
    {"get_output_too_small", get_output_too_small},
    {"get_output_zero_buffer", get_output_zero_buffer},
    {"get_output_buffer_out_of_bounds", get_output_buffer_out_of_bounds},
    {"get_output_written_out_of_bounds", get_output_written_out_of_bounds},
    {"get_output_bad_index", get_output_bad_index},
    {"get_output_unknown_context", get_output_unknown_context},
    {"get_output_before_compute", get_output_before_compute},
    {"graph_limit", graph_limit},
    {"tensor_limit", tensor_limit},
};

int main(int argc, char **argv) { return run_case(CASES, (int)(sizeof CASES / sizeof CASES[0]), argc, argv); }
