/*
 * wasi_nn.h: the wasi-nn witx ABI (module "wasi_ephemeral_nn") for C guests.
 *
 * Current witx numbering (wasi-nn PR #54 and later; Rust crate wasi-nn 0.6, WasmEdge >= 0.15,
 * wasmtime >= 15). Every function returns an nn_errno; results go to out-pointers and are
 * written only on success (get_output also writes the required size on NN_ERRNO_TOO_LARGE).
 * Build: python -m ziglang cc -target wasm32-wasi -O2 -s -I guests/include guest.c -o guest.wasm
 */
#ifndef WASI_NN_H
#define WASI_NN_H

#include <stdint.h>

typedef uint32_t nn_graph_t;
typedef uint32_t nn_context_t;

typedef enum {
    NN_ERRNO_SUCCESS = 0,
    NN_ERRNO_INVALID_ARGUMENT = 1,
    NN_ERRNO_INVALID_ENCODING = 2,
    NN_ERRNO_MISSING_MEMORY = 3,
    NN_ERRNO_BUSY = 4,
    NN_ERRNO_RUNTIME_ERROR = 5,
    NN_ERRNO_UNSUPPORTED_OPERATION = 6,
    NN_ERRNO_TOO_LARGE = 7,
    NN_ERRNO_NOT_FOUND = 8,
} nn_errno_t;

/* WasmEdge's GGML backend's own errnos (wasinn-llama, wasinn-remote): outcomes guests branch on */
typedef enum {
    NN_GGML_END_OF_SEQUENCE = 100,
    NN_GGML_CONTEXT_FULL = 101,
    NN_GGML_PROMPT_TOO_LONG = 102,
    NN_GGML_MODEL_NOT_FOUND = 103,
} nn_ggml_errno_t;

typedef enum {
    NN_TENSOR_F16 = 0,
    NN_TENSOR_F32 = 1,
    NN_TENSOR_F64 = 2,
    NN_TENSOR_U8 = 3,
    NN_TENSOR_I32 = 4,
    NN_TENSOR_I64 = 5,
} nn_tensor_type_t;

typedef enum {
    NN_ENCODING_OPENVINO = 0,
    NN_ENCODING_ONNX = 1,
    NN_ENCODING_TENSORFLOW = 2,
    NN_ENCODING_PYTORCH = 3,
    NN_ENCODING_TENSORFLOWLITE = 4,
    NN_ENCODING_AUTODETECT = 5,
    NN_ENCODING_GGML = 6, /* WasmEdge's code */
} nn_graph_encoding_t;

typedef enum {
    NN_TARGET_CPU = 0,
    NN_TARGET_GPU = 1,
    NN_TARGET_TPU = 2,
} nn_execution_target_t;

/* One graph builder: a byte span. load() takes an array of them (OpenVINO: xml, then bin). */
typedef struct {
    const uint8_t *buf;
    uint32_t len;
} nn_graph_builder_t;

/* The 20-byte tensor record: the type is ONE byte at offset 8, then 3 bytes of padding. */
typedef struct {
    const uint32_t *dims;
    uint32_t dims_len; /* rank: number of u32 dimensions */
    uint8_t type;      /* nn_tensor_type_t */
    const uint8_t *data;
    uint32_t data_len; /* bytes: product(dims) * element size */
} nn_tensor_t;

_Static_assert(sizeof(nn_tensor_t) == 20, "the witx tensor record is 20 bytes on wasm32");

#define WASI_NN_IMPORT(name) __attribute__((import_module("wasi_ephemeral_nn"), import_name(name)))

WASI_NN_IMPORT("load")
int32_t nn_load(const nn_graph_builder_t *builders, uint32_t builders_len, uint32_t encoding, uint32_t target,
                nn_graph_t *graph);
WASI_NN_IMPORT("load_by_name")
int32_t nn_load_by_name(const char *name, uint32_t name_len, nn_graph_t *graph);
/*
 * Extensions (WasmEdge, wasinn): importing them makes a module fail to instantiate on runtimes
 * without them (wasmtime), so portable guests call them only under #ifdef WASI_NN_EXTENSIONS.
 * load_by_name_with_config: the config bytes (JSON) are checked against the model's guest_options.
 */
WASI_NN_IMPORT("load_by_name_with_config")
int32_t nn_load_by_name_with_config(const char *name, uint32_t name_len, const char *config, uint32_t config_len,
                                    nn_graph_t *graph);
WASI_NN_IMPORT("init_execution_context")
int32_t nn_init_execution_context(nn_graph_t graph, nn_context_t *ctx);
WASI_NN_IMPORT("set_input")
int32_t nn_set_input(nn_context_t ctx, uint32_t index, const nn_tensor_t *tensor);
WASI_NN_IMPORT("compute")
int32_t nn_compute(nn_context_t ctx);
WASI_NN_IMPORT("get_output")
int32_t nn_get_output(nn_context_t ctx, uint32_t index, uint8_t *out, uint32_t out_max, uint32_t *bytes_written);
/* WasmEdge extensions: release handles early. */
WASI_NN_IMPORT("unload")
int32_t nn_unload(nn_graph_t graph);
WASI_NN_IMPORT("finalize_execution_context")
int32_t nn_finalize_execution_context(nn_context_t ctx);

/* WasmEdge extensions: token-by-token generation (GGML). compute_single returns 100 at the end of the
 * answer and 101 when the context is full; get_output_single gives the last token's bytes. */
WASI_NN_IMPORT("compute_single")
int32_t nn_compute_single(nn_context_t ctx);
WASI_NN_IMPORT("get_output_single")
int32_t nn_get_output_single(nn_context_t ctx, uint32_t index, uint8_t *out, uint32_t out_max,
                             uint32_t *bytes_written);
WASI_NN_IMPORT("fini_single")
int32_t nn_fini_single(nn_context_t ctx);

static inline const char *nn_strerror(int32_t err) {
    static const char *names[] = {"success", "invalid_argument", "invalid_encoding", "missing_memory", "busy",
                                  "runtime_error", "unsupported_operation", "too_large", "not_found"};
    return (err >= 0 && err <= 8) ? names[err] : "unknown errno";
}

#endif /* WASI_NN_H */
