// The attention kernels for D in {16, 32, 48, 64}, one head at a time (see attention_kernels.h).
#include "attention.h"
#include "attention_kernels.h"

namespace hacm_attention {

bool supported_head_dim(int64_t d) { return d == 16 || d == 32 || d == 48 || d == 64; }

namespace {

template <int D>
void forward_range(const float* q, const float* k, const float* v, int64_t begin, int64_t end, int64_t n,
                   float* out, float* lse) {
  Scratch scratch;
  scratch.resize(n, D);
  for (int64_t h = begin; h < end; ++h) {
    const int64_t at = h * n * D;
    forward_head<D>(q + at, k + at, v + at, n, out + at, lse + h * n, scratch);
  }
}

template <int D>
void backward_range(const float* q, const float* k, const float* v, const float* out, const float* lse,
                    const float* d_out, int64_t begin, int64_t end, int64_t n, float* dq, float* dk, float* dv) {
  Scratch scratch;
  scratch.resize(n, D);
  for (int64_t h = begin; h < end; ++h) {
    const int64_t at = h * n * D;
    backward_head<D>(q + at, k + at, v + at, out + at, lse + h * n, d_out + at, n, dq + at, dk + at, dv + at,
                     scratch);
  }
}

}  // namespace

#define HACM_DISPATCH(d, fn, ...)           \
  switch (d) {                              \
    case 16: fn<16>(__VA_ARGS__); break;    \
    case 32: fn<32>(__VA_ARGS__); break;    \
    case 48: fn<48>(__VA_ARGS__); break;    \
    case 64: fn<64>(__VA_ARGS__); break;    \
  }

void forward_heads(const float* q, const float* k, const float* v, int64_t begin, int64_t end, int64_t n,
                   int64_t d, float* out, float* lse) {
  HACM_DISPATCH(d, forward_range, q, k, v, begin, end, n, out, lse)
}

void backward_heads(const float* q, const float* k, const float* v, const float* out, const float* lse,
                    const float* d_out, int64_t begin, int64_t end, int64_t n, int64_t d, float* dq,
                    float* dk, float* dv) {
  HACM_DISPATCH(d, backward_range, q, k, v, out, lse, d_out, begin, end, n, dq, dk, dv)
}

}  // namespace hacm_attention
