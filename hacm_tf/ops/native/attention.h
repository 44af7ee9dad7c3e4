// Entry points of the attention kernels (attention_kernels.cc, compiled for the host's instruction set
// apart from the TensorFlow op, whose headers need the compiler's defaults).
#pragma once

#include <cstdint>

namespace hacm_attention {

// Head dimensions D the kernels are compiled for.
bool supported_head_dim(int64_t d);

// Heads [begin, end) of q, k, v [heads, n, d]: out [heads, n, d] = softmax(q k^T) v, lse [heads, n].
void forward_heads(const float* q, const float* k, const float* v, int64_t begin, int64_t end, int64_t n,
                   int64_t d, float* out, float* lse);

// Heads [begin, end): dq, dk, dv [heads, n, d] of out given d_out, from q, k, v, out and lse.
void backward_heads(const float* q, const float* k, const float* v, const float* out, const float* lse,
                    const float* d_out, int64_t begin, int64_t end, int64_t n, int64_t d, float* dq,
                    float* dk, float* dv);

}  // namespace hacm_attention
