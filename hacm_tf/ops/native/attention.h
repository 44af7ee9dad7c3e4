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

// Heads [begin, end): out = softmax(scale q k^T) v and lse, the rows' log-sum-exp of scale q k^T.
void forward_heads(const Geometry& g, const float* qkv, int64_t begin, int64_t end, float* out, float* lse);

// Heads [begin, end): d_qkv [B, N, 3, H, D] of out given d_out, from qkv, out and lse.
void backward_heads(const Geometry& g, const float* qkv, const float* out, const float* lse,
                    const float* d_out, int64_t begin, int64_t end, float* d_qkv);

}  // namespace hacm_attention
