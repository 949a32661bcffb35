/*
 * llama: WasmEdge's GGML example flows (second-state/WasmEdge-WASINN-examples, wasmedge-ggml) in one C
 * guest. It runs unmodified on WasmEdge and on wasinn with the same command line:
 *
 *   wasinn run --dir .:. --nn-preload default:GGML:AUTO:model.gguf llama.wasm [OPTIONS] default 'PROMPT'
 *
 *   (no option)        basic: set_input(prompt), compute, print output 0
 *   --stream           streaming: compute_single + get_output_single per token until end of sequence (100)
 *                      or context full (101), printing each token as it comes; then fini_single
 *   --embed            embeddings: print output 0 ({"n_embedding": N, "embedding": [...]})
 *   --config JSON      load_by_name_with_config(name, JSON) instead of load_by_name
 *   --metadata JSON    set_input(1, JSON) before the prompt (per-context metadata)
 *   --chat             wrap PROMPT in ChatML (<|im_start|>user ... <|im_start|>assistant)
 *   --twice FIRST      set_input(FIRST), then set_input(PROMPT): the second prompt replaces the first
 *   --unload           unload the graph after compute; then print what set_input, compute and get_output
 *                      answer (WasmEdge: 1, 1 and the output)
 *   --load FILE        load(FILE bytes, ggml, cpu) instead of a named model (a guest-supplied GGUF)
 *   --usage            print output 1 (the usage JSON) on its own line after the answer
 *   --again            load_by_name the name a second time and print both handles (WasmEdge: the same)
 *   --time             print timings on stderr: "time: compute US us" or, streaming,
 *                      "time: first US us, total US us, tokens N" (the WASI monotonic clock)
 *   --warmup           one untimed compute on the same context first (steady-state timings)
 *
 * The prompt goes in as U8 with dimensions [1] whatever its length, as the Rust examples send it.
 * Errors print "llama: CALL: NAME (errno N)" on stderr and exit with 1; the unknown-model flow prints
 * the errno of load_by_name (8 not_found for an unknown name, 103 model_not_found for a missing file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wasi_nn.h"

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* the spec's errno names, and WasmEdge's GGML ones */
static const char *errno_name(int32_t err) {
    static const char *ggml[] = {"end_of_sequence", "context_full", "prompt_too_long", "model_not_found"};
    return (err >= NN_GGML_END_OF_SEQUENCE && err <= NN_GGML_MODEL_NOT_FOUND) ? ggml[err - 100] : nn_strerror(err);
}

static int fail(const char *what, int32_t err) {
    fflush(stdout);
    fprintf(stderr, "llama: %s: %s (errno %d)\n", what, errno_name(err), (int)err);
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

static int32_t set_bytes(nn_context_t ctx, uint32_t index, const char *bytes) {
    static const uint32_t dims[1] = {1}; /* WasmEdge's guests: [1] whatever the length */
    nn_tensor_t tensor = {dims, 1, NN_TENSOR_U8, (const uint8_t *)bytes, (uint32_t)strlen(bytes)};
    return nn_set_input(ctx, index, &tensor);
}

/* output `index` (single: of the last token) into a buffer grown to the size the host reports */
static int32_t output(nn_context_t ctx, uint32_t index, int single, char **out, uint32_t *len) {
    static uint8_t *buf = NULL;
    static uint32_t cap = 0;
    if (!buf) buf = malloc(cap = 4096);
    uint32_t written = 0;
    int32_t err;
    for (;;) {
        err = single ? nn_get_output_single(ctx, index, buf, cap - 1, &written)
                     : nn_get_output(ctx, index, buf, cap - 1, &written);
        if (err != NN_ERRNO_TOO_LARGE || written < cap) break;
        buf = realloc(buf, cap = written + 1);
    }
    if (err) return err;
    buf[written] = 0;
    *out = (char *)buf;
    *len = written;
    return 0;
}

static char *chatml(const char *question) {
    const char *head = "<|im_start|>system\nYou are a tiny llama.<|im_end|>\n<|im_start|>user\n";
    const char *tail = "<|im_end|>\n<|im_start|>assistant\n";
    char *s = malloc(strlen(head) + strlen(question) + strlen(tail) + 1);
    strcpy(s, head);
    strcat(s, question);
    strcat(s, tail);
    return s;
}

int main(int argc, char **argv) {
    const char *config = NULL, *metadata = NULL, *first = NULL, *file = NULL, *name = NULL, *prompt = NULL;
    int stream = 0, embed = 0, chat = 0, unload = 0, usage = 0, again = 0, timed = 0, warmup = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--stream")) stream = 1;
        else if (!strcmp(a, "--embed")) embed = 1;
        else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--unload")) unload = 1;
        else if (!strcmp(a, "--usage")) usage = 1;
        else if (!strcmp(a, "--again")) again = 1;
        else if (!strcmp(a, "--time")) timed = 1;
        else if (!strcmp(a, "--warmup")) warmup = 1;
        else if (!strcmp(a, "--config") && v) config = argv[++i];
        else if (!strcmp(a, "--metadata") && v) metadata = argv[++i];
        else if (!strcmp(a, "--twice") && v) first = argv[++i];
        else if (!strcmp(a, "--load") && v) file = argv[++i];
        else if (a[0] != '-' && !name && !file) name = a;
        else if (a[0] != '-' && !prompt) prompt = a;
        else {
            fprintf(stderr, "usage: llama [--stream|--embed] [--config JSON] [--metadata JSON] [--chat] "
                            "[--twice FIRST] [--unload] [--usage] [--again] (NAME | --load FILE) PROMPT\n");
            return 2;
        }
    }
    if ((!name && !file) || !prompt) {
        fprintf(stderr, "llama: need a model NAME (or --load FILE) and a PROMPT\n");
        return 2;
    }
    if (chat) prompt = chatml(prompt);

    nn_graph_t graph;
    int32_t err;
    if (file) {
        nn_graph_builder_t builder;
        builder.buf = read_file(file, &builder.len);
        if (!builder.buf) {
            fprintf(stderr, "llama: cannot read %s\n", file);
            return 1;
        }
        if ((err = nn_load(&builder, 1, NN_ENCODING_GGML, NN_TARGET_CPU, &graph))) return fail("load", err);
    } else if (config) {
        if ((err = nn_load_by_name_with_config(name, (uint32_t)strlen(name), config, (uint32_t)strlen(config),
                                               &graph)))
            return fail("load_by_name_with_config", err);
    } else if ((err = nn_load_by_name(name, (uint32_t)strlen(name), &graph))) {
        return fail("load_by_name", err);
    }
    if (again) {
        nn_graph_t second;
        if ((err = nn_load_by_name(name, (uint32_t)strlen(name), &second))) return fail("load_by_name", err);
        printf("graphs: %u %u\n", graph, second);
    }
    nn_context_t ctx;
    if ((err = nn_init_execution_context(graph, &ctx))) return fail("init_execution_context", err);
    if (metadata && (err = set_bytes(ctx, 1, metadata))) return fail("set_input(metadata)", err);
    if (first && (err = set_bytes(ctx, 0, first))) return fail("set_input(first prompt)", err);
    if ((err = set_bytes(ctx, 0, prompt))) return fail("set_input", err);
    if (warmup && (err = nn_compute(ctx)) && err != NN_GGML_CONTEXT_FULL) return fail("compute (warm-up)", err);

    char *text;
    uint32_t len;
    if (stream) {
        double start = now_us(), first = 0;
        int tokens = 0;
        for (;;) {
            err = nn_compute_single(ctx);
            if (err == NN_GGML_END_OF_SEQUENCE || err == NN_GGML_CONTEXT_FULL) break;
            if (err) return fail("compute_single", err);
            if ((err = output(ctx, 0, 1, &text, &len))) return fail("get_output_single", err);
            if (!tokens++) first = now_us() - start;
            fwrite(text, 1, len, stdout);
            fflush(stdout);
        }
        if (timed) fprintf(stderr, "time: first %.0f us, total %.0f us, tokens %d\n", first, now_us() - start, tokens);
        int32_t end = err;
        /* the token that ended the answer is in output 0 too (WasmEdge renders it): print it */
        if ((err = output(ctx, 0, 1, &text, &len))) return fail("get_output_single", err);
        fwrite(text, 1, len, stdout);
        printf("\n");
        if (usage) {
            if ((err = output(ctx, 1, 1, &text, &len))) return fail("get_output_single(1)", err);
            printf("%s\n", text);
        }
        if ((err = nn_fini_single(ctx))) return fail("fini_single", err);
        fprintf(stderr, "llama: stream ended: %s\n", errno_name(end));
        return 0;
    }
    double start = now_us();
    err = nn_compute(ctx);
    if (timed) fprintf(stderr, "time: compute %.0f us\n", now_us() - start);
    if (err && err != NN_GGML_CONTEXT_FULL) return fail("compute", err);
    if (err) fprintf(stderr, "llama: compute: context_full (errno 101): printing what was generated\n");
    if ((err = output(ctx, 0, 0, &text, &len))) return fail("get_output", err);
    fwrite(text, 1, len, stdout);
    printf("\n");
    if (usage) {
        if ((err = output(ctx, 1, 0, &text, &len))) return fail("get_output(1)", err);
        printf("%s\n", text);
    }
    if (unload) {
        if ((err = nn_unload(graph))) return fail("unload", err);
        printf("after unload: set_input %d, compute %d", (int)set_bytes(ctx, 0, prompt), (int)nn_compute(ctx));
        err = output(ctx, 0, 0, &text, &len);
        printf(", get_output %d (%u bytes), unload again %d\n", (int)err, err ? 0 : len, (int)nn_unload(graph));
    }
    (void)embed; /* embedding mode is the metadata's ("embedding": true); --embed only documents the flow */
    return 0;
}
