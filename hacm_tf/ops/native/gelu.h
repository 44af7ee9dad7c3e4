// Entry points of the bias + GELU kernels (gelu_kernels.cc, compiled for the host's instruction set).
// h, y, dy, dh: [rows, f] row-major; bias, d_bias: [f]. GELU is the exact x Phi(x).
#pragma once

#include <cstdint>

namespace hacm_gelu {

// Rows [begin, end): y = gelu(h + bias).
void forward_rows(const float* h, const float* bias, int64_t f, int64_t begin, int64_t end, float* y);

// Rows [begin, end): dh = dy gelu'(h + bias), and this range's column sums of dh added to d_bias.
void backward_rows(const float* h, const float* bias, const float* dy, int64_t f, int64_t begin, int64_t end,
                   float* dh, float* d_bias);

}  // namespace hacm_gelu
