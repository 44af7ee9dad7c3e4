// Entry points of the LayerNorm kernels (layer_norm_kernels.cc, compiled for the host's instruction set).
// x, y, dy, dx: [rows, d] row-major, float32 or bfloat16 (raw uint16_t; the maths in float32, rounded
// once; y and dy bfloat16 for a float32 x as well); gamma, beta, d_gamma, d_beta: [d]; mean, rstd: [rows] (float32).
#pragma once

#include <cstdint>

namespace hacm_layer_norm {

// Rows [begin, end): y = (x - mean) * rstd * gamma + beta, rstd = 1 / sqrt(var + epsilon).
void forward_rows(const float* x, const float* gamma, const float* beta, int64_t d, float epsilon,
                  int64_t begin, int64_t end, float* y, float* mean, float* rstd);
void forward_rows(const uint16_t* x, const float* gamma, const float* beta, int64_t d, float epsilon,
                  int64_t begin, int64_t end, uint16_t* y, float* mean, float* rstd);
void forward_rows(const float* x, const float* gamma, const float* beta, int64_t d, float epsilon,
                  int64_t begin, int64_t end, uint16_t* y, float* mean, float* rstd);

// Rows [begin, end): dx (plus d_residual where it is not null: the gradient x gets from the residual
// stream, summed in the same pass), and this range's sums of dy * x_hat and dy (added to d_gamma, d_beta).
void backward_rows(const float* x, const float* gamma, const float* mean, const float* rstd, const float* dy,
                   const float* d_residual, int64_t d, int64_t begin, int64_t end, float* dx, float* d_gamma,
                   float* d_beta);
void backward_rows(const uint16_t* x, const float* gamma, const float* mean, const float* rstd,
                   const uint16_t* dy, const uint16_t* d_residual, int64_t d, int64_t begin, int64_t end,
                   uint16_t* dx, float* d_gamma, float* d_beta);
void backward_rows(const float* x, const float* gamma, const float* mean, const float* rstd, const uint16_t* dy,
                   const float* d_residual, int64_t d, int64_t begin, int64_t end, float* dx, float* d_gamma,
                   float* d_beta);

}  // namespace hacm_layer_norm
