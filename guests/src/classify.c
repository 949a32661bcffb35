/*
 * classify: a generic wasi-nn guest. Feeds one raw tensor file to a model and prints the top-K of
 * output 0 (f32). Also times a compute loop with the WASI monotonic clock (--repeat).
 *
 *   classify [--name NAME | --model FILE [--model FILE]] [--encoding ENC] [--target T]
 *            [--type f32|f16|f64|u8|i32|i64] --dims 1x3x224x224 [--top K] [--repeat N] INPUT
 *
 * The output buffer starts small and grows when get_output answers too_large: to the required size the
 * host reports in bytes_written, or by doubling when the host does not report it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wasi_nn.h"

#define MAX_MODELS 2
#define MAX_RANK 8

static int fail(const char *what, int32_t err) {
    fprintf(stderr, "classify: %s failed: %s (errno %d)\n", what, nn_strerror(err), (int)err);
    return 1;
}

static uint8_t *read_file(const char *path, uint32_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (uint32_t)n;
    return buf;
}

static int lookup(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    static const char *encodings[] = {"openvino", "onnx", "tensorflow", "pytorch", "tensorflowlite", "autodetect"};
    static const char *targets[] = {"cpu", "gpu", "tpu"};
    static const char *types[] = {"f16", "f32", "f64", "u8", "i32", "i64"};
    const char *name = NULL, *models[MAX_MODELS], *input = NULL;
    int n_models = 0, encoding = NN_ENCODING_AUTODETECT, target = NN_TARGET_CPU, type = NN_TENSOR_F32;
    int top = 5, repeat = 1;
    uint32_t dims[MAX_RANK], rank = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--name") && v) name = argv[++i];
        else if (!strcmp(a, "--model") && v && n_models < MAX_MODELS) models[n_models++] = argv[++i];
        else if (!strcmp(a, "--encoding") && v && (encoding = lookup(argv[++i], encodings, 6)) >= 0) {}
        else if (!strcmp(a, "--target") && v && (target = lookup(argv[++i], targets, 3)) >= 0) {}
        else if (!strcmp(a, "--type") && v && (type = lookup(argv[++i], types, 6)) >= 0) {}
        else if (!strcmp(a, "--top") && v) top = atoi(argv[++i]);
        else if (!strcmp(a, "--repeat") && v) repeat = atoi(argv[++i]);
        else if (!strcmp(a, "--dims") && v) {
            char *s = argv[++i];
            while (*s && rank < MAX_RANK) {
                dims[rank++] = (uint32_t)strtoul(s, &s, 10);
                if (*s == 'x') s++;
            }
        } else if (a[0] != '-' && !input) input = a;
        else {
            fprintf(stderr, "usage: classify [--name NAME | --model FILE...] [--encoding E] [--target T] "
                            "[--type T] --dims AxBxC [--top K] [--repeat N] INPUT\n");
            return 2;
        }
    }
    if (!input || !rank || (!name && !n_models) || repeat < 1) {
        fprintf(stderr, "classify: need INPUT, --dims and --name or --model\n");
        return 2;
    }

    nn_graph_t graph;
    int32_t err;
    double t0 = now_us();
    if (n_models) {
        nn_graph_builder_t builders[MAX_MODELS];
        for (int i = 0; i < n_models; i++) {
            builders[i].buf = read_file(models[i], &builders[i].len);
            if (!builders[i].buf) {
                fprintf(stderr, "classify: cannot read %s\n", models[i]);
                return 1;
            }
        }
        if ((err = nn_load(builders, (uint32_t)n_models, (uint32_t)encoding, (uint32_t)target, &graph)))
            return fail("load", err);
    } else if ((err = nn_load_by_name(name, (uint32_t)strlen(name), &graph))) {
        return fail("load_by_name", err);
    }
    nn_context_t ctx;
    if ((err = nn_init_execution_context(graph, &ctx))) return fail("init_execution_context", err);
    uint32_t in_len;
    uint8_t *in = read_file(input, &in_len);
    if (!in) {
        fprintf(stderr, "classify: cannot read %s\n", input);
        return 1;
    }
    nn_tensor_t tensor = {dims, rank, (uint8_t)type, in, in_len};
    uint32_t out_max = 64, written = 0;
    uint8_t *out = malloc(out_max);
    double *times = malloc(sizeof(double) * (size_t)repeat), first = 0;
    for (int r = 0; r < repeat; r++) {
        double start = now_us();
        if ((err = nn_set_input(ctx, 0, &tensor))) return fail("set_input", err);
        if ((err = nn_compute(ctx))) return fail("compute", err);
        err = nn_get_output(ctx, 0, out, out_max, &written);
        while (err == NN_ERRNO_TOO_LARGE && out_max < (1u << 30)) {
            /* grow to the size the host reported; hosts that do not report it (wasmtime) get doubling */
            out_max = written > out_max ? written : out_max * 2;
            out = realloc(out, out_max);
            err = nn_get_output(ctx, 0, out, out_max, &written);
        }
        if (err) return fail("get_output", err);
        times[r] = now_us() - start;
        if (r == 0) first = now_us() - t0;
    }
    uint32_t n = written / 4;
    const float *scores = (const float *)out;
    printf("output 0: %u bytes\ntop-%d:", written, top);
    /* top-K by repeated selection over a copy */
    float *copy = malloc(n * sizeof(float));
    memcpy(copy, scores, n * sizeof(float));
    for (int k = 0; k < top && k < (int)n; k++) {
        uint32_t best = 0;
        for (uint32_t j = 1; j < n; j++)
            if (copy[j] > copy[best]) best = j;
        printf(" %u:%.6f", best, copy[best]);
        copy[best] = -3.0e38f;
    }
    printf("\n");
    if (repeat > 1) {
        qsort(times, (size_t)repeat, sizeof(double), cmp_double);
        printf("first inference after %.1f us; %d iterations: median %.1f us, min %.1f us\n", first, repeat,
               times[repeat / 2], times[0]);
    }
#ifdef WASI_NN_EXTENSIONS /* WasmEdge's extensions; wasmtime does not provide them */
    nn_finalize_execution_context(ctx);
    nn_unload(graph);
#endif
    return 0;
}
