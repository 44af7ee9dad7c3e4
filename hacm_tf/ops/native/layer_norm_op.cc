// TensorFlow ops HacmLayerNorm (LayerNorm over the last axis, with the rows' mean and 1 / std) and
// HacmLayerNormGrad, on layer_norm_kernels.cc; rows run in parallel on the intra-op thread pool. x, y,
// dy, dx float32 or bfloat16 (the maths in float32; y and dy may be bfloat16 for a float32 x);
// parameters and row statistics float32.
#include <vector>

#include "layer_norm.h"
#include "op_util.h"

namespace {

using namespace hacm_ops;  // NOLINT

Status RowShape(InferenceContext* c, ShapeHandle* rows) {
  ShapeHandle x;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &x));
  return c->Subshape(x, 0, -1, rows);
}

}  // namespace

REGISTER_OP("HacmLayerNorm")
    .Input("x: T")
    .Input("gamma: float")
    .Input("beta: float")
    .Attr("epsilon: float")
    .Attr("T: {float, bfloat16}")
    .Attr("U: {float, bfloat16} = DT_FLOAT")
    .Output("y: U")
    .Output("mean: float")
    .Output("rstd: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle rows;
      TF_RETURN_IF_ERROR(RowShape(c, &rows));
      c->set_output(0, c->input(0));
      c->set_output(1, rows);
      c->set_output(2, rows);
      return Status();
    })
    .Doc("LayerNorm over the last axis of x [..., D] with gamma, beta [D], y in dtype U (x's, or bfloat16 "
         "from float32 x); the rows' mean and 1 / sqrt(var + epsilon) [...] for the gradient.");

REGISTER_OP("HacmLayerNormGrad")
    .Input("x: T")
    .Input("gamma: float")
    .Input("mean: float")
    .Input("rstd: float")
    .Input("dy: U")
    .Input("d_residual: N * T")
    .Attr("T: {float, bfloat16}")
    .Attr("U: {float, bfloat16}")
    .Attr("N: int >= 0 = 0")
    .Output("dx: T")
    .Output("d_gamma: float")
    .Output("d_beta: float")
    .SetShapeFn(ShapesOfInputs<0, 1, 1>)
    .Doc("Gradients of HacmLayerNorm's y given dy: dx [..., D] (plus d_residual [..., D] if given: x's "
         "gradient from the residual stream), d_gamma and d_beta [D].");

namespace {

TensorShape RowsOf(const TensorShape& x) {
  TensorShape rows = x;
  rows.RemoveLastDims(1);
  return rows;
}

// Checks x [..., D] against gamma (and beta) [D], the row statistics and dy; returns (rows, D).
Status Geometry(OpKernelContext* ctx, bool grad, int64_t* rows, int64_t* d) {
  const char* op = grad ? "HacmLayerNormGrad" : "HacmLayerNorm";
  TF_RETURN_IF_ERROR(RowsAndWidth(op, ctx->input(0), rows, d));
  TF_RETURN_IF_ERROR(ExpectShape(op, "gamma", ctx->input(1), TensorShape({*d})));
  if (!grad) return ExpectShape(op, "beta", ctx->input(2), TensorShape({*d}));
  const TensorShape row_shape = RowsOf(ctx->input(0).shape());
  TF_RETURN_IF_ERROR(ExpectShape(op, "mean", ctx->input(2), row_shape));
  TF_RETURN_IF_ERROR(ExpectShape(op, "rstd", ctx->input(3), row_shape));
  TF_RETURN_IF_ERROR(ExpectShape(op, "dy", ctx->input(4), ctx->input(0).shape()));
  if (ctx->num_inputs() > 6) return InvalidArgument(op, ": at most one d_residual, got ", ctx->num_inputs() - 5);
  return ctx->num_inputs() == 6 ? ExpectShape(op, "d_residual", ctx->input(5), ctx->input(0).shape()) : Status();
}

template <class T, class U>
class LayerNormOp : public OpKernel {
 public:
  explicit LayerNormOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon_));
  }

  void Compute(OpKernelContext* ctx) override {
    int64_t rows, d;
    OP_REQUIRES_OK(ctx, Geometry(ctx, false, &rows, &d));
    Tensor *y, *mean, *rstd;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, RowsOf(ctx->input(0).shape()), &mean));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, RowsOf(ctx->input(0).shape()), &rstd));
    if (rows == 0 || d == 0) return;
    const auto* x = Data(ctx->input(0), T());
    const float *gamma = ctx->input(1).flat<float>().data(), *beta = ctx->input(2).flat<float>().data();
    auto* yp = Data(y, U());
    float *mp = mean->flat<float>().data(), *sp = rstd->flat<float>().data();
    ParallelRows(ctx, rows, 8 * d, [&](int64_t begin, int64_t end) {
      hacm_layer_norm::forward_rows(x, gamma, beta, d, epsilon_, begin, end, yp, mp, sp);
    });
  }

 private:
  float epsilon_;
};

template <class T, class U>
class LayerNormGradOp : public OpKernel {
 public:
  explicit LayerNormGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    int64_t rows, d;
    OP_REQUIRES_OK(ctx, Geometry(ctx, true, &rows, &d));
    Tensor *dx, *d_gamma, *d_beta;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({d}), &d_gamma));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({d}), &d_beta));
    if (d == 0) return;
    const auto* x = Data(ctx->input(0), T());
    const auto* dy = Data(ctx->input(4), U());
    const auto* d_residual = ctx->num_inputs() == 6 ? Data(ctx->input(5), T()) : nullptr;
    const float* in[4];
    for (int i = 1; i < 4; ++i) in[i] = ctx->input(i).flat<float>().data();  // gamma, mean, rstd
    auto* dxp = Data(dx, T());
    std::vector<float> sums(2 * d);  // d_gamma, d_beta
    RowsWithColumnSums(ctx, rows, d, 2, 12 * d, [&](int64_t begin, int64_t end, float* block_sums) {
      hacm_layer_norm::backward_rows(x, in[1], in[2], in[3], dy, d_residual, d, begin, end, dxp, block_sums,
                                     block_sums + d);
    }, sums.data());
    std::copy(sums.begin(), sums.begin() + d, d_gamma->flat<float>().data());
    std::copy(sums.begin() + d, sums.end(), d_beta->flat<float>().data());
  }
};

}  // namespace

#define HACM_REGISTER(T, U)                                                                      \
  REGISTER_KERNEL_BUILDER(                                                                        \
      Name("HacmLayerNorm").Device(DEVICE_CPU).TypeConstraint<T>("T").TypeConstraint<U>("U"),     \
      LayerNormOp<T, U>);                                                                         \
  REGISTER_KERNEL_BUILDER(                                                                        \
      Name("HacmLayerNormGrad").Device(DEVICE_CPU).TypeConstraint<T>("T").TypeConstraint<U>("U"), \
      LayerNormGradOp<T, U>);
HACM_REGISTER(float, float)
HACM_REGISTER(bfloat16, bfloat16)
HACM_REGISTER(float, bfloat16)  // a float32 residual stream normalised into a bfloat16 branch
