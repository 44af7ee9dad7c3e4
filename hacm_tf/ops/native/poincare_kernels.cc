// The Poincare-ball map of hacm_tf.ops.hyperbolic.expmap_project, one row at a time while it sits in
// cache: norm, clipping, exponential map and projection as the Python function's float32 steps
// (tanh in double, rounded once), then the row's scale factor and its slope in double for the
// gradient, which is a single pass: dx = scale dy + slope (x . dy) x.
#include <algorithm>
#include <cmath>

#include "attention_kernels.h"  // vfloat, kLanes, load, store, splat, hsum
#include "poincare.h"

namespace hacm_poincare {

using hacm_attention::hsum;
using hacm_attention::kLanes;
using hacm_attention::load;
using hacm_attention::splat;
using hacm_attention::store;
using hacm_attention::vfloat;

namespace {

constexpr float kMinNorm = 1e-15f;
constexpr double kBallEps = 1e-5;

float dot(const float* a, const float* b, int64_t d) {
  const int64_t full = d / kLanes * kLanes;
  vfloat acc = vfloat{};
  for (int64_t k = 0; k < full; k += kLanes) acc += load(a + k) * load(b + k);
  float sum = hsum(acc);
  for (int64_t k = full; k < d; ++k) sum += a[k] * b[k];
  return sum;
}

// out = in * factor (factor_first: (factor * in) / divisor; else in * factor / divisor), element-wise.
void scale_row(const float* in, float factor, float divisor, bool factor_first, int64_t d, float* out) {
  const int64_t full = d / kLanes * kLanes;
  const vfloat f = splat(factor), q = splat(divisor);
  for (int64_t k = 0; k < full; k += kLanes) store(out + k, (factor_first ? f * load(in + k) : load(in + k) * f) / q);
  for (int64_t k = full; k < d; ++k) out[k] = (factor_first ? factor * in[k] : in[k] * factor) / divisor;
}

}  // namespace

void expmap_project_rows(const float* x, int64_t d, int64_t begin, int64_t end, float c, float r, float* y,
                         float* factors) {
  const float sc = std::sqrt(c), pulled = static_cast<float>(1.0 - kBallEps) / sc;
  for (int64_t row = begin; row < end; ++row) {
    const float* xr = x + row * d;
    float* yr = y + row * d;
    const float norm = std::sqrt(dot(xr, xr, d));
    // clip: x1 = x * min(1, r / max(|x|, eps)), its norm taken again (as the Python function does)
    const float clip = r > 0 ? std::min(1.f, r / std::max(norm, kMinNorm)) : 1.f;
    const float* x1 = xr;
    float n1 = norm;
    if (clip < 1.f) {
      scale_row(xr, clip, 1.f, false, d, yr);
      x1 = yr;
      n1 = std::sqrt(dot(yr, yr, d));
    }
    // expmap0: e = tanh(sqrt(c) |x1|) x1 / (sqrt(c) |x1|), e = x1 where |x1| = 0
    const float t = sc * std::max(n1, kMinNorm);
    const float th = static_cast<float>(std::tanh(static_cast<double>(t)));
    if (n1 > 0) scale_row(x1, th, t, true, d, yr);
    else if (x1 != yr) std::copy(x1, x1 + d, yr);
    // project: pulled back to (1 - 1e-5) / sqrt(c) where |e| >= 1 / sqrt(c)
    const float e_norm = std::sqrt(dot(yr, yr, d));
    const bool projected = e_norm >= 1.f / sc;
    if (projected) scale_row(yr, pulled, std::max(e_norm, kMinNorm), false, d, yr);
    // factors (hacm_tf.ops.hyperbolic.radial_factors)
    const double n = norm, sq = std::sqrt(static_cast<double>(c));
    const double th1 = std::tanh(sq * (r > 0 ? std::min(n, static_cast<double>(r)) : n));
    const double radius = projected ? (1.0 - kBallEps) / sq : th1 / sq;
    const double d_radius = projected || (r > 0 && n > r) ? 0.0 : 1.0 - th1 * th1;
    const double scale = n > 0 ? radius / n : 1.0, slope = n > 0 ? (d_radius - scale) / (n * n) : 0.0;
    factors[2 * row] = static_cast<float>(scale);
    factors[2 * row + 1] = static_cast<float>(slope);
  }
}

void radial_gradient_rows(const float* x, const float* factors, const float* dy, int64_t d, int64_t begin,
                          int64_t end, float* dx) {
  const int64_t full = d / kLanes * kLanes;
  for (int64_t row = begin; row < end; ++row) {
    const float *xr = x + row * d, *gr = dy + row * d;
    float* out = dx + row * d;
    const float scale = factors[2 * row], along = factors[2 * row + 1] * dot(xr, gr, d);
    const vfloat s = splat(scale), a = splat(along);
    for (int64_t k = 0; k < full; k += kLanes) store(out + k, s * load(gr + k) + a * load(xr + k));
    for (int64_t k = full; k < d; ++k) out[k] = scale * gr[k] + along * xr[k];
  }
}

}  // namespace hacm_poincare
