// The attention kernels for D in {16, 32, 48, 64}, one head at a time (see attention_kernels.h).
#include "attention.h"
#include "attention_kernels.h"

namespace hacm_attention {

bool supported_head_dim(int64_t d) { return d == 16 || d == 32 || d == 48 || d == 64; }

namespace {

// The k and v rows of head h + 1 when it is in the same range (read into cache while h computes).
inline const NextHead* next_head(const Geometry& g, const float* qkv, int64_t h, int64_t end, NextHead* next) {
  if (h + 1 >= end) return nullptr;
  const HeadAt at(g, h + 1);
  const float* q = qkv + at.packed;
  *next = {{q + at.part, at.packed_stride}, {q + 2 * at.part, at.packed_stride}};
  return next;
}

// fn(h, at, q, scratch, next) for the heads h in [begin, end): q points at head h's queries in qkv,
// next at head h + 1's k and v rows when that head is in the range; one scratch per range.
template <int D, class Fn>
void each_head(const Geometry& g, const float* qkv, int64_t begin, int64_t end, Fn fn) {
  Scratch scratch;
  scratch.resize(g.tokens, D);
  NextHead next;
  for (int64_t h = begin; h < end; ++h) {
    const HeadAt at(g, h);
    fn(h, at, qkv + at.packed, scratch, next_head(g, qkv, h, end, &next));
  }
  stream_fence();  // the streamed results are written before the range is reported done
}

template <int D>
void forward_range(const Geometry& g, const float* qkv, int64_t begin, int64_t end, float* out, float* lse) {
  each_head<D>(g, qkv, begin, end, [&](int64_t h, const HeadAt& at, const float* q, Scratch& s, const NextHead* next) {
    const int64_t ps = at.packed_stride;
    forward_head<D>({q, ps}, {q + at.part, ps}, {q + 2 * at.part, ps}, g.tokens, g.scale,
                    {out + at.plain, at.plain_stride}, lse + h * g.tokens, s, next);
  });
}

template <int D>
void backward_range(const Geometry& g, const float* qkv, const float* out, const float* lse, const float* d_out,
                    int64_t begin, int64_t end, float* d_qkv) {
  each_head<D>(g, qkv, begin, end, [&](int64_t h, const HeadAt& at, const float* q, Scratch& s, const NextHead* next) {
    const int64_t ps = at.packed_stride;
    float* dq = d_qkv + at.packed;
    backward_head<D>({q, ps}, {q + at.part, ps}, {q + 2 * at.part, ps}, {out + at.plain, at.plain_stride},
                     {d_out + at.plain, at.plain_stride}, lse + h * g.tokens, g.tokens, g.scale, {dq, ps},
                     {dq + at.part, ps}, {dq + 2 * at.part, ps}, s, next);
  });
}

}  // namespace

#define HACM_DISPATCH(d, fn, ...)           \
  switch (d) {                              \
    case 16: fn<16>(__VA_ARGS__); break;    \
    case 32: fn<32>(__VA_ARGS__); break;    \
    case 48: fn<48>(__VA_ARGS__); break;    \
    case 64: fn<64>(__VA_ARGS__); break;    \
  }

void forward_heads(const Geometry& g, const float* qkv, int64_t begin, int64_t end, float* out, float* lse) {
  HACM_DISPATCH(g.dim, forward_range, g, qkv, begin, end, out, lse)
}

void backward_heads(const Geometry& g, const float* qkv, const float* out, const float* lse,
                    const float* d_out, int64_t begin, int64_t end, float* d_qkv) {
  HACM_DISPATCH(g.dim, backward_range, g, qkv, out, lse, d_out, begin, end, d_qkv)
}

}  // namespace hacm_attention
