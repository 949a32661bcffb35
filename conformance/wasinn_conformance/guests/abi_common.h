/*
 * Shared helpers of the conformance ABI guests. Each guest is `GUEST CASE [options]`; it prints
 * "PASS" and exits 0, or prints "FAIL: why" and exits 1. The reference model is f32 [2, 3] -> f32 [2, 3],
 * y = 2x + 3, given as files (load) and as the named model (load_by_name).
 *
 * Options: --encoding N --model PATH [--model PATH] --target N --name NAME
 *          --unsupported-encoding N --unavailable-target N
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasi_nn.h"

static struct {
    int encoding, target, unsupported_encoding, unavailable_target;
    const char *name;
    nn_graph_builder_t builders[2];
    uint32_t n_builders;
} opt = {NN_ENCODING_ONNX, NN_TARGET_CPU, NN_ENCODING_TENSORFLOW, -1, "conformance", {{0, 0}, {0, 0}}, 0};

static const float X[6] = {0, 1, 2, 3, 4, 5};
static const uint32_t DIMS[2] = {2, 3};

#define FAIL(...)                  \
    do {                           \
        printf("FAIL: " __VA_ARGS__); \
        printf("\n");              \
        return 1;                  \
    } while (0)

#define EXPECT(call, want)                                                                                 \
    do {                                                                                                   \
        int32_t e_ = (call);                                                                               \
        if (e_ != (want))                                                                                  \
            FAIL("%s returned %d (%s), expected %d (%s)", #call, (int)e_, nn_strerror(e_), (int)(want),   \
                 nn_strerror(want));                                                                       \
    } while (0)

#define EXPECT2(call, a, b)                                                                                \
    do {                                                                                                   \
        int32_t e_ = (call);                                                                               \
        if (e_ != (a) && e_ != (b))                                                                        \
            FAIL("%s returned %d (%s), expected %s or %s", #call, (int)e_, nn_strerror(e_), nn_strerror(a), \
                 nn_strerror(b));                                                                          \
    } while (0)

/* One past the last byte of linear memory: every span starting here is out of bounds. */
static uint8_t *mem_end(void) { return (uint8_t *)(uintptr_t)(__builtin_wasm_memory_size(0) * 65536u); }

static uint8_t *read_file(const char *path, uint32_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) buf = NULL;
    fclose(f);
    *len = (uint32_t)n;
    return buf;
}

static nn_tensor_t input_tensor(void) {
    nn_tensor_t t = {DIMS, 2, NN_TENSOR_F32, (const uint8_t *)X, sizeof X};
    return t;
}

static int load_graph(nn_graph_t *graph) {
    EXPECT(nn_load(opt.builders, opt.n_builders, (uint32_t)opt.encoding, (uint32_t)opt.target, graph),
           NN_ERRNO_SUCCESS);
    return 0;
}

static int new_context(nn_graph_t *graph, nn_context_t *ctx) {
    if (load_graph(graph)) return 1;
    EXPECT(nn_init_execution_context(*graph, ctx), NN_ERRNO_SUCCESS);
    return 0;
}

/* set_input + compute with x * scale, then get_output checked against 2 * x * scale + 3. */
static int infer_scaled(nn_context_t ctx, float scale) {
    float x[6], y[6];
    for (int i = 0; i < 6; i++) x[i] = X[i] * scale;
    nn_tensor_t t = {DIMS, 2, NN_TENSOR_F32, (const uint8_t *)x, sizeof x};
    uint32_t written = 0;
    EXPECT(nn_set_input(ctx, 0, &t), NN_ERRNO_SUCCESS);
    EXPECT(nn_compute(ctx), NN_ERRNO_SUCCESS);
    EXPECT(nn_get_output(ctx, 0, (uint8_t *)y, sizeof y, &written), NN_ERRNO_SUCCESS);
    if (written != sizeof y) FAIL("get_output wrote %u bytes, expected %u", written, (unsigned)sizeof y);
    for (int i = 0; i < 6; i++) {
        float want = 2 * x[i] + 3, diff = y[i] - want;
        if (diff > 1e-3f * (want < 0 ? -want : want) + 1e-3f || -diff > 1e-3f * (want < 0 ? -want : want) + 1e-3f)
            FAIL("output[%d] = %g, expected %g", i, (double)y[i], (double)want);
    }
    return 0;
}

static int parse_options(int argc, char **argv) {
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return -1;
        i++;
        if (!strcmp(a, "--encoding")) opt.encoding = atoi(v);
        else if (!strcmp(a, "--target")) opt.target = atoi(v);
        else if (!strcmp(a, "--name")) opt.name = v;
        else if (!strcmp(a, "--unsupported-encoding")) opt.unsupported_encoding = atoi(v);
        else if (!strcmp(a, "--unavailable-target")) opt.unavailable_target = atoi(v);
        else if (!strcmp(a, "--model") && opt.n_builders < 2) {
            nn_graph_builder_t *b = &opt.builders[opt.n_builders++];
            b->buf = read_file(v, &b->len);
            if (!b->buf) {
                printf("FAIL: cannot read model file %s (is its folder preopened?)\n", v);
                return -1;
            }
        } else return -1;
    }
    return 0;
}

typedef struct {
    const char *name;
    int (*run)(void);
} abi_case_t;

static int run_case(const abi_case_t *cases, int n, int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--list")) {
        for (int i = 0; i < n; i++) printf("%s\n", cases[i].name);
        return 0;
    }
    if (argc < 2 || parse_options(argc, argv)) {
        printf("FAIL: usage: %s CASE [--encoding N] [--model PATH]... [--target N] [--name NAME]\n", argv[0]);
        return 2;
    }
    for (int i = 0; i < n; i++) {
        if (!strcmp(argv[1], cases[i].name)) {
            int rc = cases[i].run();
            if (rc == 0) printf("PASS\n");
            return rc;
        }
    }
    printf("FAIL: unknown case %s\n", argv[1]);
    return 2;
}
