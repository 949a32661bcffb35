/*
 * digits: the demo guest. Classifies 8x8 handwritten digits (PGM files) through wasi-nn.
 *
 *   digits [--name NAME | --model FILE [--model FILE]] [--encoding ENC] [--target TARGET] IMAGES_DIR
 *
 * IMAGES_DIR/labels.txt lists "FILE LABEL" per line. By default the model is the host's named
 * model "digits" (load_by_name); --model loads files through load() instead. The model takes
 * f32 [1, 64] pixels scaled to 0..1 and returns f32 [1, 10] probabilities.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasi_nn.h"

#define MAX_MODELS 2

static int fail(const char *what, int32_t err) {
    fprintf(stderr, "digits: %s failed: %s (errno %d)\n", what, nn_strerror(err), (int)err);
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

/* Reads an ASCII PGM (P2) of 8x8 pixels into 64 floats scaled to 0..1. */
static int read_pgm(const char *path, float pixels[64]) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char magic[3] = {0};
    int w = 0, h = 0, maxval = 0, c;
    if (fscanf(f, "%2s", magic) != 1 || strcmp(magic, "P2") != 0) goto bad;
    while ((c = fgetc(f)) != EOF) { /* skip whitespace and comment lines */
        if (c == '#') {
            while ((c = fgetc(f)) != EOF && c != '\n') {}
        } else if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
            ungetc(c, f);
            break;
        }
    }
    if (fscanf(f, "%d %d %d", &w, &h, &maxval) != 3 || w != 8 || h != 8 || maxval <= 0) goto bad;
    for (int i = 0; i < 64; i++) {
        int v;
        if (fscanf(f, "%d", &v) != 1) goto bad;
        pixels[i] = (float)v / (float)maxval;
    }
    fclose(f);
    return 0;
bad:
    fclose(f);
    return -1;
}

static int parse_encoding(const char *s) {
    static const char *names[] = {"openvino", "onnx", "tensorflow", "pytorch", "tensorflowlite", "autodetect"};
    for (int i = 0; i < 6; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

static int parse_target(const char *s) {
    if (strcmp(s, "cpu") == 0) return NN_TARGET_CPU;
    if (strcmp(s, "gpu") == 0) return NN_TARGET_GPU;
    if (strcmp(s, "tpu") == 0) return NN_TARGET_TPU;
    return -1;
}

int main(int argc, char **argv) {
    const char *name = "digits", *models[MAX_MODELS], *dir = NULL;
    int n_models = 0, encoding = NN_ENCODING_AUTODETECT, target = NN_TARGET_CPU;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc && n_models < MAX_MODELS) {
            models[n_models++] = argv[++i];
        } else if (strcmp(argv[i], "--encoding") == 0 && i + 1 < argc) {
            if ((encoding = parse_encoding(argv[++i])) < 0) {
                fprintf(stderr, "digits: unknown encoding %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
            if ((target = parse_target(argv[++i])) < 0) {
                fprintf(stderr, "digits: unknown target %s\n", argv[i]);
                return 2;
            }
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "usage: digits [--name NAME | --model FILE...] [--encoding ENC] [--target T] IMAGES_DIR\n");
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: digits [--name NAME | --model FILE...] [--encoding ENC] [--target T] IMAGES_DIR\n");
        return 2;
    }

    nn_graph_t graph;
    int32_t err;
    if (n_models) {
        nn_graph_builder_t builders[MAX_MODELS];
        for (int i = 0; i < n_models; i++) {
            builders[i].buf = read_file(models[i], &builders[i].len);
            if (!builders[i].buf) {
                fprintf(stderr, "digits: cannot read model %s\n", models[i]);
                return 1;
            }
        }
        err = nn_load(builders, (uint32_t)n_models, (uint32_t)encoding, (uint32_t)target, &graph);
        if (err) return fail("load", err);
        printf("model: %s loaded through load()\n", models[0]);
    } else {
        err = nn_load_by_name(name, (uint32_t)strlen(name), &graph);
        if (err) return fail("load_by_name", err);
        printf("model: \"%s\" loaded by name\n", name);
    }
    nn_context_t ctx;
    if ((err = nn_init_execution_context(graph, &ctx))) return fail("init_execution_context", err);

    char path[512], line[512], file[256];
    snprintf(path, sizeof path, "%s/labels.txt", dir);
    FILE *labels = fopen(path, "r");
    if (!labels) {
        fprintf(stderr, "digits: cannot open %s (did you pass --dir?)\n", path);
        return 1;
    }
    int total = 0, correct = 0, label;
    while (fgets(line, sizeof line, labels)) {
        if (sscanf(line, "%255s %d", file, &label) != 2) continue;
        float pixels[64], probs[10];
        snprintf(path, sizeof path, "%s/%s", dir, file);
        if (read_pgm(path, pixels)) {
            fprintf(stderr, "digits: cannot read image %s\n", path);
            return 1;
        }
        uint32_t dims[2] = {1, 64}, written = 0;
        nn_tensor_t tensor = {dims, 2, NN_TENSOR_F32, (const uint8_t *)pixels, sizeof pixels};
        if ((err = nn_set_input(ctx, 0, &tensor))) return fail("set_input", err);
        if ((err = nn_compute(ctx))) return fail("compute", err);
        if ((err = nn_get_output(ctx, 0, (uint8_t *)probs, sizeof probs, &written))) return fail("get_output", err);
        int best = 0;
        for (int k = 1; k < 10; k++)
            if (probs[k] > probs[best]) best = k;
        total++;
        correct += best == label;
        printf("%s: predicted %d (p=%.3f), label %d%s\n", file, best, probs[best], label, best == label ? "" : "  MISS");
    }
    fclose(labels);
#ifdef WASI_NN_EXTENSIONS /* WasmEdge's extensions; wasmtime does not provide them */
    nn_finalize_execution_context(ctx);
    nn_unload(graph);
#endif
    if (!total) {
        fprintf(stderr, "digits: no images listed in %s/labels.txt\n", dir);
        return 1;
    }
    printf("accuracy: %d/%d = %.1f%%\n", correct, total, 100.0 * correct / total);
    return 0;
}
