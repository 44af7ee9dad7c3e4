// The residual stream's addition of a branch: the branch's conversion to float32 (bfloat16 under mixed
// precision), the bias of the layer that made it, its drop-path factor and the addition in one pass,
// and the branch's gradient (factor, rounding to its type, the bias's column sums) in one pass;
// TensorFlow runs these as a BiasAdd, a Cast, a Mul and an AddV2 each way.
#include "attention_kernels.h"  // vfloat, kLanes, load, store, splat, put, to_float
#include "residual.h"

namespace hacm_residual {

using hacm_attention::kLanes;
using hacm_attention::load;
using hacm_attention::put;
using hacm_attention::splat;
using hacm_attention::store;
using hacm_attention::to_float;
using hacm_attention::vfloat;

namespace {

template <class T, bool kBias>
void add(const float* x, const T* branch, const float* bias, const float* scale, int64_t rows_per_sample,
         int64_t d, int64_t begin, int64_t end, float* y) {
  const int64_t full = d / kLanes * kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const float s = scale ? scale[r / rows_per_sample] : 1.f;
    const vfloat sv = splat(s);
    const float* xr = x + r * d;
    const T* br = branch + r * d;
    float* yr = y + r * d;
    for (int64_t j = 0; j < full; j += kLanes)
      store(yr + j, load(xr + j) + sv * (kBias ? load(br + j) + load(bias + j) : load(br + j)));
    for (int64_t j = full; j < d; ++j) yr[j] = xr[j] + s * (kBias ? to_float(br[j]) + bias[j] : to_float(br[j]));
  }
}

template <class T, bool kBias>
void scale(const float* dy, const float* factors, int64_t rows_per_sample, int64_t d, int64_t begin, int64_t end,
           T* d_branch, float* d_bias) {
  const int64_t full = d / kLanes * kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const float s = factors ? factors[r / rows_per_sample] : 1.f;
    const vfloat sv = splat(s);
    const float* gr = dy + r * d;
    T* out = d_branch + r * d;
    for (int64_t j = 0; j < full; j += kLanes) {
      const vfloat g = sv * load(gr + j);
      store(out + j, g);
      if (kBias) store(d_bias + j, load(d_bias + j) + g);
    }
    for (int64_t j = full; j < d; ++j) {
      put(out + j, s * gr[j]);
      if (kBias) d_bias[j] += s * gr[j];
    }
  }
}

template <class T>
void add_any(const float* x, const T* branch, const float* bias, const float* scale, int64_t rows_per_sample,
             int64_t d, int64_t begin, int64_t end, float* y) {
  if (bias) add<T, true>(x, branch, bias, scale, rows_per_sample, d, begin, end, y);
  else add<T, false>(x, branch, bias, scale, rows_per_sample, d, begin, end, y);
}

template <class T>
void scale_any(const float* dy, const float* factors, int64_t rows_per_sample, int64_t d, int64_t begin,
               int64_t end, T* d_branch, float* d_bias) {
  if (d_bias) scale<T, true>(dy, factors, rows_per_sample, d, begin, end, d_branch, d_bias);
  else scale<T, false>(dy, factors, rows_per_sample, d, begin, end, d_branch, d_bias);
}

}  // namespace

void add_rows(const float* x, const float* branch, const float* bias, const float* scale, int64_t rows_per_sample,
              int64_t d, int64_t begin, int64_t end, float* y) {
  add_any(x, branch, bias, scale, rows_per_sample, d, begin, end, y);
}
void add_rows(const float* x, const uint16_t* branch, const float* bias, const float* scale,
              int64_t rows_per_sample, int64_t d, int64_t begin, int64_t end, float* y) {
  add_any(x, branch, bias, scale, rows_per_sample, d, begin, end, y);
}
void scale_rows(const float* dy, const float* factors, int64_t rows_per_sample, int64_t d, int64_t begin,
                int64_t end, float* d_branch, float* d_bias) {
  scale_any(dy, factors, rows_per_sample, d, begin, end, d_branch, d_bias);
}
void scale_rows(const float* dy, const float* factors, int64_t rows_per_sample, int64_t d, int64_t begin,
                int64_t end, uint16_t* d_branch, float* d_bias) {
  scale_any(dy, factors, rows_per_sample, d, begin, end, d_branch, d_bias);
}

}  // namespace hacm_residual
