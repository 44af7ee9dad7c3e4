// Helpers shared by the ops: the TensorFlow names they use, shape checks with messages naming the op
// and the input, parallel loops on the intra-op thread pool, and parameter gradients summed over rows
// in fixed blocks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"

namespace hacm_ops {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

using tensorflow::bfloat16;

// The kernels' element pointers: float32 as is, bfloat16 as its raw 16 bits (uint16_t); the second
// argument picks the type.
inline const float* Data(const Tensor& t, float) { return t.flat<float>().data(); }
inline float* Data(Tensor* t, float) { return t->flat<float>().data(); }
inline const uint16_t* Data(const Tensor& t, bfloat16) {
  return reinterpret_cast<const uint16_t*>(t.flat<bfloat16>().data());
}
inline uint16_t* Data(Tensor* t, bfloat16) { return reinterpret_cast<uint16_t*>(t->flat<bfloat16>().data()); }

// "op: name has shape [...], expected [...]" unless t has the shape want.
inline Status ExpectShape(const char* op, const char* name, const Tensor& t, const TensorShape& want) {
  if (t.shape() != want)
    return InvalidArgument(op, ": ", name, " has shape ", t.shape().DebugString(), ", expected ",
                           want.DebugString());
  return Status();
}

// x [..., W]: the number of rows (product of the leading axes) and W.
inline Status RowsAndWidth(const char* op, const Tensor& x, int64_t* rows, int64_t* width) {
  if (x.dims() < 1) return InvalidArgument(op, ": the input must have at least one axis");
  *width = x.dim_size(x.dims() - 1);
  *rows = *width ? x.NumElements() / *width : 0;
  return Status();
}

// Shape function of a gradient op whose output i has the shape of input like[i].
template <int... like>
Status ShapesOfInputs(InferenceContext* c) {
  int output = 0;
  for (int input : {like...}) c->set_output(output++, c->input(input));
  return Status();
}

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
