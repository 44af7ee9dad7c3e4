// TensorFlow ops HacmResidualAdd (x + scale * (branch + bias): a float32 residual stream plus a float32 or
// bfloat16 branch with the bias of the layer that made it, scaled per sample by its drop-path factor)
// and HacmResidualAddGrad (the gradients of the branch and of the bias), on residual_kernels.cc; rows
// run in parallel on the intra-op thread pool.
#include "op_util.h"
#include "residual.h"

namespace {

using namespace hacm_ops;  // NOLINT

// x (or dy) [B, ..., D] and scale [B] or [0] (no factors): rows, D and rows per sample.
Status Geometry(const char* op, const Tensor& x, const Tensor& scale, int64_t* rows, int64_t* d,
                int64_t* rows_per_sample) {
  TF_RETURN_IF_ERROR(RowsAndWidth(op, x, rows, d));
  if (scale.dims() != 1) return InvalidArgument(op, ": scale must be a vector [B] or [0], got shape ",
                                                scale.shape().DebugString());
  const int64_t samples = scale.dim_size(0);
  if (samples > 0 && (x.dims() < 2 || x.dim_size(0) != samples))
    return InvalidArgument(op, ": scale has ", samples, " factors for an input of shape ", x.shape().DebugString());
  *rows_per_sample = samples > 0 && *rows > 0 ? *rows / samples : 1;
  return Status();
}

}  // namespace

REGISTER_OP("HacmResidualAdd")
    .Input("x: float")
    .Input("branch: T")
    .Input("bias: float")
    .Input("scale: float")
    .Attr("T: {float, bfloat16}")
    .Output("y: float")
    .SetShapeFn(ShapesOfInputs<0>)
    .Doc("y = x + scale[b] * (branch + bias) in float32: x [B, ..., D] float32, branch of x's shape, bias "
         "[D] or [0] (none), scale [B] (per-sample drop-path factors) or [0] (none).");

REGISTER_OP("HacmResidualAddGrad")
    .Input("dy: float")
    .Input("scale: float")
    .Attr("T: {float, bfloat16}")
    .Attr("bias: bool = false")
    .Output("d_branch: T")
    .Output("d_bias: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle dy;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &dy));
      bool bias;
      TF_RETURN_IF_ERROR(c->GetAttr("bias", &bias));
      c->set_output(0, dy);
      c->set_output(1, c->Vector(bias ? c->Dim(dy, -1) : c->MakeDim(0)));
      return Status();
    })
    .Doc("The gradients of HacmResidualAdd's branch, scale[b] * dy in the branch's dtype T (x's is dy), "
         "and with ``bias`` of its bias [D] (else [0]).");

namespace {

template <class T>
class ResidualAddOp : public OpKernel {
 public:
  explicit ResidualAddOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const char* op = "HacmResidualAdd";
    const Tensor &x = ctx->input(0), &scale = ctx->input(3);
    int64_t rows, d, per_sample;
    OP_REQUIRES_OK(ctx, Geometry(op, x, scale, &rows, &d, &per_sample));
    OP_REQUIRES_OK(ctx, ExpectShape(op, "branch", ctx->input(1), x.shape()));
    const Tensor& bias = ctx->input(2);
    if (bias.NumElements() > 0) OP_REQUIRES_OK(ctx, ExpectShape(op, "bias", bias, TensorShape({d})));
    Tensor* y;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &y));
    if (rows == 0 || d == 0) return;
    const float* xp = x.flat<float>().data();
    const auto* bp = Data(ctx->input(1), T());
    const float* sp = scale.NumElements() ? scale.flat<float>().data() : nullptr;
    const float* biasp = bias.NumElements() ? bias.flat<float>().data() : nullptr;
    float* yp = y->flat<float>().data();
    ParallelRows(ctx, rows, 2 * d, [&](int64_t begin, int64_t end) {
      hacm_residual::add_rows(xp, bp, biasp, sp, per_sample, d, begin, end, yp);
    });
  }
};

template <class T>
class ResidualAddGradOp : public OpKernel {
 public:
  explicit ResidualAddGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("bias", &bias_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor &dy = ctx->input(0), &scale = ctx->input(1);
    int64_t rows, d, per_sample;
    OP_REQUIRES_OK(ctx, Geometry("HacmResidualAddGrad", dy, scale, &rows, &d, &per_sample));
    Tensor *d_branch, *d_bias;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, dy.shape(), &d_branch));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({bias_ ? d : 0}), &d_bias));
    if (d == 0) return;
    const float* gp = dy.flat<float>().data();
    const float* sp = scale.NumElements() ? scale.flat<float>().data() : nullptr;
    auto* out = Data(d_branch, T());
    if (bias_) {
      RowsWithColumnSums(ctx, rows, d, 1, 3 * d, [&](int64_t begin, int64_t end, float* sums) {
        hacm_residual::scale_rows(gp, sp, per_sample, d, begin, end, out, sums);
      }, d_bias->flat<float>().data());
    } else {
      ParallelRows(ctx, rows, 2 * d, [&](int64_t begin, int64_t end) {
        hacm_residual::scale_rows(gp, sp, per_sample, d, begin, end, out, nullptr);
      });
    }
  }

 private:
  bool bias_;
};

}  // namespace

#define HACM_REGISTER(T)                                                                                      \
  REGISTER_KERNEL_BUILDER(Name("HacmResidualAdd").Device(DEVICE_CPU).TypeConstraint<T>("T"), ResidualAddOp<T>); \
  REGISTER_KERNEL_BUILDER(Name("HacmResidualAddGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),             \
                          ResidualAddGradOp<T>);
HACM_REGISTER(float)
HACM_REGISTER(bfloat16)
