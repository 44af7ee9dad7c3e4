// The residual stream's addition of a branch: the branch's conversion to float32 (bfloat16 under mixed
// precision), its drop-path factor and the addition in one pass, and the branch's gradient (factor and
// rounding to its type) in one pass; TensorFlow runs these as a Cast, a Mul and an AddV2 each way.
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

template <class T>
void add(const float* x, const T* branch, const float* scale, int64_t rows_per_sample, int64_t d,
         int64_t begin, int64_t end, float* y) {
  const int64_t full = d / kLanes * kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const float s = scale ? scale[r / rows_per_sample] : 1.f;
    const vfloat sv = splat(s);
    const float* xr = x + r * d;
    const T* br = branch + r * d;
    float* yr = y + r * d;
    for (int64_t j = 0; j < full; j += kLanes) store(yr + j, load(xr + j) + sv * load(br + j));
    for (int64_t j = full; j < d; ++j) yr[j] = xr[j] + s * to_float(br[j]);
  }
}

template <class T>
void scale(const float* dy, const float* factors, int64_t rows_per_sample, int64_t d, int64_t begin, int64_t end,
           T* d_branch) {
  const int64_t full = d / kLanes * kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const float s = factors ? factors[r / rows_per_sample] : 1.f;
    const vfloat sv = splat(s);
    const float* gr = dy + r * d;
    T* out = d_branch + r * d;
    for (int64_t j = 0; j < full; j += kLanes) store(out + j, sv * load(gr + j));
    for (int64_t j = full; j < d; ++j) put(out + j, s * gr[j]);
  }
}

}  // namespace

void add_rows(const float* x, const float* branch, const float* scale, int64_t rows_per_sample, int64_t d,
              int64_t begin, int64_t end, float* y) {
  add(x, branch, scale, rows_per_sample, d, begin, end, y);
}
void add_rows(const float* x, const uint16_t* branch, const float* scale, int64_t rows_per_sample, int64_t d,
              int64_t begin, int64_t end, float* y) {
  add(x, branch, scale, rows_per_sample, d, begin, end, y);
}
void scale_rows(const float* dy, const float* factors, int64_t rows_per_sample, int64_t d, int64_t begin,
                int64_t end, float* d_branch) {
  scale(dy, factors, rows_per_sample, d, begin, end, d_branch);
}
void scale_rows(const float* dy, const float* factors, int64_t rows_per_sample, int64_t d, int64_t begin,
                int64_t end, uint16_t* d_branch) {
  scale(dy, factors, rows_per_sample, d, begin, end, d_branch);
}

}  // namespace hacm_residual
