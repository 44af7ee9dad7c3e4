// Entry points of the attention kernels (attention_kernels.cc, compiled for the host's instruction set
// apart from the TensorFlow op, whose headers need the compiler's defaults).
//
// Layout: the packed projection qkv [B, N, 3, H, D] (q, k, v of every head, token-major, as one
// qkv matmul makes them); out and d_out [B, N, H, D]; lse [B, H, N]. Heads are numbered b * H + h.
#pragma once

#include <cstdint>

namespace hacm_attention {

// Head dimensions D the kernels are compiled for.
bool supported_head_dim(int64_t d);

struct Geometry {
  int64_t batch, tokens, heads, dim;  // B, N, H, D
  float scale;                        // on q k^T
};

// Where head `index` (b * H + h) of the packed layout starts.
struct HeadAt {
  int64_t packed, plain;  // offsets of q in qkv [B, N, 3, H, D] and of the head in out [B, N, H, D]
  int64_t packed_stride, plain_stride, part;  // row strides; k = q + part, v = q + 2 part
  HeadAt(const Geometry& g, int64_t index) {
    const int64_t b = index / g.heads, h = index % g.heads, width = g.heads * g.dim;
    packed = b * g.tokens * 3 * width + h * g.dim;
    plain = b * g.tokens * width + h * g.dim;
    packed_stride = 3 * width;
    plain_stride = width;
    part = width;
  }
};

// A head's rows as the kernels read them: query j at q + j * stride, its key at + part, value at + 2 part.
template <class T>
struct HeadInput {
  const T* q;
  int64_t stride, part;
};

// With a bias (float32 [3, H, D], the qkv projection's, which the op adds: qkv is then the projection
// without it) each head's q, k and v plus the bias are first written to a dense per-thread block; the
// gradient's d_bias_heads [B * H, 3, D] (float32) receives each head's sums of dq, dk and dv over its
// tokens, which the op adds up over the batch. nullptr: no bias.

// Heads [begin, end): out = softmax(scale q k^T) v and lse, the rows' log-sum-exp of scale q k^T.
void forward_heads(const Geometry& g, const float* qkv, const float* bias, int64_t begin, int64_t end, float* out,
                   float* lse);

// Heads [begin, end): d_qkv [B, N, 3, H, D] of out given d_out, from qkv, out and lse.
void backward_heads(const Geometry& g, const float* qkv, const float* bias, const float* out, const float* lse,
                    const float* d_out, int64_t begin, int64_t end, float* d_qkv, float* d_bias_heads);

// bfloat16 (raw bits) on the AMX tiles (attention_amx.cc): the same ops with qkv, out, d_out and d_qkv
// in bfloat16, lse in float32; products of bfloat16 pairs summed in float32, softmax in float32.
// True when this build has the AMX kernels and the OS grants this process the tile registers.
bool amx_ready();
// Head dimensions the bfloat16 kernels are compiled for.
bool amx_head_dim(int64_t d);
void forward_heads(const Geometry& g, const uint16_t* qkv, const float* bias, int64_t begin, int64_t end,
                   uint16_t* out, float* lse);
void backward_heads(const Geometry& g, const uint16_t* qkv, const float* bias, const uint16_t* out,
                    const float* lse, const uint16_t* d_out, int64_t begin, int64_t end, uint16_t* d_qkv,
                    float* d_bias_heads);

}  // namespace hacm_attention
