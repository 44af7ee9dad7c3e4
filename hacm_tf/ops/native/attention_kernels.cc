// The attention kernels for D in {16, 32, 48, 64}, one head at a time (see attention_kernels.h).
#include "attention.h"
#include "attention_kernels.h"

namespace hacm_attention {

bool supported_head_dim(int64_t d) { return d == 16 || d == 32 || d == 48 || d == 64; }

namespace {

// fn(h, in, scratch, next) for the heads h in [begin, end): in, head h's rows in qkv (with the bias
// added, in a dense block, when there is one), next head h + 1's k and v rows when that head is in the
// range; one scratch per range.
template <int D, class Fn>
void each_head(const Geometry& g, const float* qkv, const float* bias, int64_t begin, int64_t end, Fn fn) {
  Scratch scratch;
  scratch.resize(g.tokens, D);
  std::vector<float> biased(bias ? g.tokens * 3 * D : 0);
  Rows next[3];
  for (int64_t h = begin; h < end; ++h) {
    const HeadInput<float> in = bias ? add_head_bias(g, qkv, bias, h, biased.data()) : head_input(g, qkv, h);
    fn(h, in, scratch, next_head(g, qkv, bias != nullptr, h, end, next));
  }
  stream_fence();  // the streamed results are written before the range is reported done
}

template <int D>
void forward_range(const Geometry& g, const float* qkv, const float* bias, int64_t begin, int64_t end, float* out,
                   float* lse) {
  each_head<D>(g, qkv, bias, begin, end, [&](int64_t h, const HeadInput<float>& in, Scratch& s, const Rows* next) {
    const HeadAt at(g, h);
    forward_head<D>({in.q, in.stride}, {in.q + in.part, in.stride}, {in.q + 2 * in.part, in.stride}, g.tokens,
                    g.scale, {out + at.plain, at.plain_stride}, lse + h * g.tokens, s, next);
  });
}

template <int D>
void backward_range(const Geometry& g, const float* qkv, const float* bias, const float* out, const float* lse,
                    const float* d_out, int64_t begin, int64_t end, float* d_qkv, float* d_bias_heads) {
  each_head<D>(g, qkv, bias, begin, end, [&](int64_t h, const HeadInput<float>& in, Scratch& s, const Rows* next) {
    const HeadAt at(g, h);
    const int64_t ps = at.packed_stride;
    float* dq = d_qkv + at.packed;
    backward_head<D>({in.q, in.stride}, {in.q + in.part, in.stride}, {in.q + 2 * in.part, in.stride},
                     {out + at.plain, at.plain_stride}, {d_out + at.plain, at.plain_stride}, lse + h * g.tokens,
                     g.tokens, g.scale, {dq, ps}, {dq + at.part, ps}, {dq + 2 * at.part, ps}, s, next);
    if (d_bias_heads) sum_head_rows(g, d_qkv, h, d_bias_heads + h * 3 * D);
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

void forward_heads(const Geometry& g, const float* qkv, const float* bias, int64_t begin, int64_t end, float* out,
                   float* lse) {
  HACM_DISPATCH(g.dim, forward_range, g, qkv, bias, begin, end, out, lse)
}

void backward_heads(const Geometry& g, const float* qkv, const float* bias, const float* out, const float* lse,
                    const float* d_out, int64_t begin, int64_t end, float* d_qkv, float* d_bias_heads) {
  HACM_DISPATCH(g.dim, backward_range, g, qkv, bias, out, lse, d_out, begin, end, d_qkv, d_bias_heads)
}

}  // namespace hacm_attention
