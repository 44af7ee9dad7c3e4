// Entry points of the bias + GELU and bias kernels (gelu_kernels.cc, compiled for the host's instruction
// set). h, y, dy, dh: [rows, f] row-major, float32 or bfloat16 (raw uint16_t; the maths in float32,
// rounded once); bias, d_bias: [f] float32. GELU is the exact x Phi(x).
#pragma once

#include <cstdint>

namespace hacm_gelu {

// Rows [begin, end): y = gelu(h + bias).
void forward_rows(const float* h, const float* bias, int64_t f, int64_t begin, int64_t end, float* y);
void forward_rows(const uint16_t* h, const float* bias, int64_t f, int64_t begin, int64_t end, uint16_t* y);

// Rows [begin, end): dh = dy gelu'(h + bias), and this range's column sums of dh added to d_bias.
void backward_rows(const float* h, const float* bias, const float* dy, int64_t f, int64_t begin, int64_t end,
                   float* dh, float* d_bias);
void backward_rows(const uint16_t* h, const float* bias, const uint16_t* dy, int64_t f, int64_t begin,
                   int64_t end, uint16_t* dh, float* d_bias);

// Rows [begin, end): y = h + bias (bfloat16).
void add_bias_rows(const uint16_t* h, const float* bias, int64_t f, int64_t begin, int64_t end, uint16_t* y);

// Rows [begin, end) of dy: their column sums added to sums [f] (bfloat16 rows, float32 sums).
void add_column_sums(const uint16_t* dy, int64_t f, int64_t begin, int64_t end, float* sums);

}  // namespace hacm_gelu
