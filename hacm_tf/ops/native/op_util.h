// Helpers shared by the row-wise ops (LayerNorm, bias + GELU): parallel loops over rows on the
// intra-op thread pool, and parameter gradients summed over rows in fixed blocks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/platform/threadpool.h"

namespace hacm_ops {

// fn(begin, end) over ranges of `rows` rows; cost: operations per row.
template <class Fn>
void ParallelRows(tensorflow::OpKernelContext* ctx, int64_t rows, int64_t cost_per_row, Fn fn) {
  ctx->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(rows, cost_per_row, fn);
}

// fn(begin, end, sums) over ranges of rows, each fixed block of rows adding its column sums into
// its own `sums` [count][width] zeroed buffers; the blocks' sums are then added in block order into
// out[count][width] (so the result does not depend on how the pool splits the work).
template <class Fn>
void RowsWithColumnSums(tensorflow::OpKernelContext* ctx, int64_t rows, int64_t width, int count,
                        int64_t cost_per_row, Fn fn, float* out) {
  std::fill(out, out + count * width, 0.f);
  if (rows == 0) return;
  const int64_t blocks = std::min<int64_t>(64, (rows + 255) / 256), per_block = (rows + blocks - 1) / blocks;
  std::vector<float> partial(blocks * count * width, 0.f);
  ParallelRows(ctx, blocks, cost_per_row * per_block, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b)
      fn(std::min(rows, b * per_block), std::min(rows, (b + 1) * per_block), &partial[b * count * width]);
  });
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < count * width; ++j) out[j] += partial[b * count * width + j];
}

}  // namespace hacm_ops
