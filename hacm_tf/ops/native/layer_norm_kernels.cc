// LayerNorm forward and backward over rows, vectorised along the normalised axis (one pass over the
// row for each statistic while it sits in L1).
#include "layer_norm.h"

#include "attention_kernels.h"  // vfloat, kLanes, load, store, splat, hsum

namespace hacm_layer_norm {

using hacm_attention::hsum;
using hacm_attention::kLanes;
using hacm_attention::load;
using hacm_attention::put;
using hacm_attention::splat;
using hacm_attention::store;
using hacm_attention::to_float;
using hacm_attention::vfloat;

namespace {

// sum of f(j-th vector) over a row of d floats (full vectors, then the tail one float at a time)
template <class Vec, class Scalar>
float row_sum(int64_t d, Vec vec, Scalar scalar) {
  const int64_t full = d / kLanes * kLanes;
  vfloat acc = vfloat{};
  for (int64_t j = 0; j < full; j += kLanes) acc += vec(j);
  float total = hsum(acc);
  for (int64_t j = full; j < d; ++j) total += scalar(j);
  return total;
}

template <class T, class U>
void forward(const T* x, const float* gamma, const float* beta, int64_t d, float epsilon, int64_t begin,
             int64_t end, U* y, float* mean, float* rstd) {
  const int64_t full = d / kLanes * kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = x + r * d;
    U* yr = y + r * d;
    const float m =
        row_sum(d, [&](int64_t j) { return load(xr + j); }, [&](int64_t j) { return to_float(xr[j]); }) / d;
    const vfloat mv = splat(m);
    const float var = row_sum(
        d, [&](int64_t j) { const vfloat c = load(xr + j) - mv; return c * c; },
        [&](int64_t j) { const float c = to_float(xr[j]) - m; return c * c; }) / d;
    const float s = 1.f / std::sqrt(var + epsilon);
    const vfloat sv = splat(s);
    for (int64_t j = 0; j < full; j += kLanes)
      store(yr + j, (load(xr + j) - mv) * sv * load(gamma + j) + load(beta + j));
    for (int64_t j = full; j < d; ++j) put(yr + j, (to_float(xr[j]) - m) * s * gamma[j] + beta[j]);
    mean[r] = m;
    rstd[r] = s;
  }
}

template <class T, class U>
void backward(const T* x, const float* gamma, const float* mean, const float* rstd, const U* dy,
              const T* d_residual, int64_t d, int64_t begin, int64_t end, T* dx, float* d_gamma, float* d_beta) {
  const int64_t full = d / kLanes * kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = x + r * d;
    const U* gr = dy + r * d;
    T* dxr = dx + r * d;
    const T* res = d_residual ? d_residual + r * d : nullptr;
    const vfloat mv = splat(mean[r]), sv = splat(rstd[r]);
    const float m = mean[r], s = rstd[r];
    // with x_hat = (x - mean) rstd and g = dy gamma: dx = rstd (g - mean(g) - x_hat mean(g x_hat))
    const float g_mean = row_sum(
        d, [&](int64_t j) { return load(gr + j) * load(gamma + j); },
        [&](int64_t j) { return to_float(gr[j]) * gamma[j]; }) / d;
    const float gx_mean = row_sum(
        d, [&](int64_t j) { return load(gr + j) * load(gamma + j) * ((load(xr + j) - mv) * sv); },
        [&](int64_t j) { return to_float(gr[j]) * gamma[j] * ((to_float(xr[j]) - m) * s); }) / d;
    const vfloat gm = splat(g_mean), gxm = splat(gx_mean);
    for (int64_t j = 0; j < full; j += kLanes) {
      const vfloat x_hat = (load(xr + j) - mv) * sv, g = load(gr + j);
      const vfloat grad = sv * (g * load(gamma + j) - gm - x_hat * gxm);
      store(dxr + j, res ? grad + load(res + j) : grad);
      store(d_gamma + j, load(d_gamma + j) + g * x_hat);
      store(d_beta + j, load(d_beta + j) + g);
    }
    for (int64_t j = full; j < d; ++j) {
      const float x_hat = (to_float(xr[j]) - m) * s, g = to_float(gr[j]);
      const float grad = s * (g * gamma[j] - g_mean - x_hat * gx_mean);
      put(dxr + j, res ? grad + to_float(res[j]) : grad);
      d_gamma[j] += g * x_hat;
      d_beta[j] += g;
    }
  }
}

}  // namespace

void forward_rows(const float* x, const float* gamma, const float* beta, int64_t d, float epsilon,
                  int64_t begin, int64_t end, float* y, float* mean, float* rstd) {
  forward(x, gamma, beta, d, epsilon, begin, end, y, mean, rstd);
}
void forward_rows(const uint16_t* x, const float* gamma, const float* beta, int64_t d, float epsilon,
                  int64_t begin, int64_t end, uint16_t* y, float* mean, float* rstd) {
  forward(x, gamma, beta, d, epsilon, begin, end, y, mean, rstd);
}
void forward_rows(const float* x, const float* gamma, const float* beta, int64_t d, float epsilon,
                  int64_t begin, int64_t end, uint16_t* y, float* mean, float* rstd) {
  forward(x, gamma, beta, d, epsilon, begin, end, y, mean, rstd);
}
void backward_rows(const float* x, const float* gamma, const float* mean, const float* rstd, const float* dy,
                   const float* d_residual, int64_t d, int64_t begin, int64_t end, float* dx, float* d_gamma,
                   float* d_beta) {
  backward(x, gamma, mean, rstd, dy, d_residual, d, begin, end, dx, d_gamma, d_beta);
}
void backward_rows(const float* x, const float* gamma, const float* mean, const float* rstd, const uint16_t* dy,
                   const float* d_residual, int64_t d, int64_t begin, int64_t end, float* dx, float* d_gamma,
                   float* d_beta) {
  backward(x, gamma, mean, rstd, dy, d_residual, d, begin, end, dx, d_gamma, d_beta);
}
void backward_rows(const uint16_t* x, const float* gamma, const float* mean, const float* rstd,
                   const uint16_t* dy, const uint16_t* d_residual, int64_t d, int64_t begin, int64_t end,
                   uint16_t* dx, float* d_gamma, float* d_beta) {
  backward(x, gamma, mean, rstd, dy, d_residual, d, begin, end, dx, d_gamma, d_beta);
}

}  // namespace hacm_layer_norm
