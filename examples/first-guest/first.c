/* first.c: a complete wasi-nn guest. Asks the host for its model "digits" and classifies one 8x8 image. */
#include <stdio.h>
#include <string.h>

#include "wasi_nn.h"

int main(void) {
    /* a handwritten 7 from the digits data set, 8x8 pixels of 0..16 */
    static const unsigned char seven[64] = {
        0, 0, 2, 13, 16, 9, 0, 0,  0, 0, 12, 12, 7, 16, 3, 0,  0, 1, 14, 3, 0, 16, 4, 0,
        0, 0, 0, 4, 10, 16, 6, 0,  0, 0, 0, 13, 16, 16, 9, 0,  0, 0, 0, 5, 13, 1, 0, 0,
        0, 0, 0, 11, 9, 0, 0, 0,   0, 0, 1, 16, 4, 0, 0, 0,
    };
    float pixels[64];
    for (int i = 0; i < 64; i++) pixels[i] = seven[i] / 16.0f;

    nn_graph_t graph;
    nn_context_t ctx;
    if (nn_load_by_name("digits", strlen("digits"), &graph) || nn_init_execution_context(graph, &ctx)) {
        fprintf(stderr, "no model named digits: run with --nn-preload digits:...\n");
        return 1;
    }
    uint32_t dims[2] = {1, 64}, written = 0;
    nn_tensor_t input = {dims, 2, NN_TENSOR_F32, (const uint8_t *)pixels, sizeof pixels};
    float probabilities[10];
    int32_t err = nn_set_input(ctx, 0, &input);
    if (!err) err = nn_compute(ctx);
    if (!err) err = nn_get_output(ctx, 0, (uint8_t *)probabilities, sizeof probabilities, &written);
    if (err) {
        fprintf(stderr, "wasi-nn error: %s\n", nn_strerror(err));
        return 1;
    }
    int best = 0;
    for (int k = 1; k < 10; k++)
        if (probabilities[k] > probabilities[best]) best = k;
    printf("this looks like a %d (p=%.2f)\n", best, probabilities[best]);
    return 0;
}
