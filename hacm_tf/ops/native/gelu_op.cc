// TensorFlow ops HacmBiasGelu (y = gelu(h + bias), exact GELU) and HacmBiasGeluGrad (dh and d_bias),
// on gelu_kernels.cc; rows run in parallel on the intra-op thread pool.
#include "gelu.h"
#include "op_util.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;
using tensorflow::shape_inference::InferenceContext;

}  // namespace

REGISTER_OP("HacmBiasGelu")
    .Input("h: float")
    .Input("bias: float")
    .Output("y: float")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return Status();
    })
    .Doc("Exact GELU of h [..., F] plus bias [F]: (h + bias) Phi(h + bias).");

REGISTER_OP("HacmBiasGeluGrad")
    .Input("h: float")
    .Input("bias: float")
    .Input("dy: float")
    .Output("dh: float")
    .Output("d_bias: float")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      return Status();
    })
    .Doc("Gradients of HacmBiasGelu's y given dy: dh [..., F] and d_bias [F].");

namespace {

// Checks h [..., F] against bias [F] (and dy like h); returns (rows, F).
Status Geometry(OpKernelContext* ctx, bool grad, int64_t* rows, int64_t* f) {
  const Tensor& h = ctx->input(0);
  if (h.dims() < 1) return InvalidArgument("HacmBiasGelu: h must have at least one axis");
  *f = h.dim_size(h.dims() - 1);
  *rows = *f ? h.NumElements() / *f : 0;
  if (ctx->input(1).shape() != TensorShape({*f}))
    return InvalidArgument("HacmBiasGelu: bias has shape ", ctx->input(1).shape().DebugString(), ", expected [",
                           *f, "]");
  if (grad && ctx->input(2).shape() != h.shape())
    return InvalidArgument("HacmBiasGeluGrad: dy has shape ", ctx->input(2).shape().DebugString(), ", h has ",
                           h.shape().DebugString());
  return Status();
}

class BiasGeluOp : public OpKernel {
 public:
  explicit BiasGeluOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    int64_t rows, f;
    OP_REQUIRES_OK(ctx, Geometry(ctx, false, &rows, &f));
    Tensor* y;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &y));
    if (rows == 0 || f == 0) return;
    const float *h = ctx->input(0).flat<float>().data(), *bias = ctx->input(1).flat<float>().data();
    float* yp = y->flat<float>().data();
    hacm_ops::ParallelRows(ctx, rows, 40 * f, [&](int64_t begin, int64_t end) {
      hacm_gelu::forward_rows(h, bias, f, begin, end, yp);
    });
  }
};

class BiasGeluGradOp : public OpKernel {
 public:
  explicit BiasGeluGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    int64_t rows, f;
    OP_REQUIRES_OK(ctx, Geometry(ctx, true, &rows, &f));
    Tensor *dh, *d_bias;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &dh));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({f}), &d_bias));
    if (f == 0) return;
    const float *h = ctx->input(0).flat<float>().data(), *bias = ctx->input(1).flat<float>().data(),
                *dy = ctx->input(2).flat<float>().data();
    float* dhp = dh->flat<float>().data();
    hacm_ops::RowsWithColumnSums(ctx, rows, f, 1, 45 * f, [&](int64_t begin, int64_t end, float* sums) {
      hacm_gelu::backward_rows(h, bias, dy, f, begin, end, dhp, sums);
    }, d_bias->flat<float>().data());
  }
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("HacmBiasGelu").Device(DEVICE_CPU), BiasGeluOp);
REGISTER_KERNEL_BUILDER(Name("HacmBiasGeluGrad").Device(DEVICE_CPU), BiasGeluGradOp);
