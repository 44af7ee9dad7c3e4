// TensorFlow ops HacmBiasGelu (y = gelu(h + bias), exact GELU) and HacmBiasGeluGrad (dh and d_bias),
// on gelu_kernels.cc; rows run in parallel on the intra-op thread pool.
#include "gelu.h"
#include "op_util.h"

namespace {

using namespace hacm_ops;  // NOLINT

}  // namespace

REGISTER_OP("HacmBiasGelu")
    .Input("h: float")
    .Input("bias: float")
    .Output("y: float")
    .SetShapeFn(ShapesOfInputs<0>)
    .Doc("Exact GELU of h [..., F] plus bias [F]: (h + bias) Phi(h + bias).");

REGISTER_OP("HacmBiasGeluGrad")
    .Input("h: float")
    .Input("bias: float")
    .Input("dy: float")
    .Output("dh: float")
    .Output("d_bias: float")
    .SetShapeFn(ShapesOfInputs<0, 1>)
    .Doc("Gradients of HacmBiasGelu's y given dy: dh [..., F] and d_bias [F].");

namespace {

// Checks h [..., F] against bias [F] (and dy like h); returns (rows, F).
Status Geometry(OpKernelContext* ctx, bool grad, int64_t* rows, int64_t* f) {
  const char* op = grad ? "HacmBiasGeluGrad" : "HacmBiasGelu";
  TF_RETURN_IF_ERROR(RowsAndWidth(op, ctx->input(0), rows, f));
  TF_RETURN_IF_ERROR(ExpectShape(op, "bias", ctx->input(1), TensorShape({*f})));
  return grad ? ExpectShape(op, "dy", ctx->input(2), ctx->input(0).shape()) : Status();
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
    ParallelRows(ctx, rows, 40 * f, [&](int64_t begin, int64_t end) {
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
    RowsWithColumnSums(ctx, rows, f, 1, 45 * f, [&](int64_t begin, int64_t end, float* sums) {
      hacm_gelu::backward_rows(h, bias, dy, f, begin, end, dhp, sums);
    }, d_bias->flat<float>().data());
  }
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("HacmBiasGelu").Device(DEVICE_CPU), BiasGeluOp);
REGISTER_KERNEL_BUILDER(Name("HacmBiasGeluGrad").Device(DEVICE_CPU), BiasGeluGradOp);
