// Entry points of the residual-stream kernels (residual_kernels.cc, compiled for the host's instruction
// set). x, y, dy: [rows, d] float32 row-major; branch, d_branch: [rows, d] float32 or bfloat16 (raw
// uint16_t); scale: one factor per sample of rows_per_sample consecutive rows (drop path), or null for 1;
// bias: [d] float32 (the bias of the layer that made the branch), or null.
#pragma once

#include <cstdint>

namespace hacm_residual {

// Rows [begin, end): y = x + scale * (branch + bias), in float32.
void add_rows(const float* x, const float* branch, const float* bias, const float* scale, int64_t rows_per_sample,
              int64_t d, int64_t begin, int64_t end, float* y);
void add_rows(const float* x, const uint16_t* branch, const float* bias, const float* scale,
              int64_t rows_per_sample, int64_t d, int64_t begin, int64_t end, float* y);

// Rows [begin, end): d_branch = scale * dy, rounded to the branch's type; with d_bias not null, this
// range's column sums of scale * dy (float32) added to it.
void scale_rows(const float* dy, const float* scale, int64_t rows_per_sample, int64_t d, int64_t begin,
                int64_t end, float* d_branch, float* d_bias);
void scale_rows(const float* dy, const float* scale, int64_t rows_per_sample, int64_t d, int64_t begin,
                int64_t end, uint16_t* d_branch, float* d_bias);

}  // namespace hacm_residual
