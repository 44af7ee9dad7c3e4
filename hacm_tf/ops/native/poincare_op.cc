// TensorFlow ops HacmExpmapProject (the Poincare-ball map project(expmap0(clip(x))) over the last axis,
// with each row's scale factor and its slope) and HacmExpmapProjectGrad, on poincare_kernels.cc; rows
// run in parallel on the intra-op thread pool. float32.
#include "op_util.h"
#include "poincare.h"

namespace {

using namespace hacm_ops;  // NOLINT

// The factors' shape [..., 2] for x [..., D].
TensorShape FactorShape(const Tensor& x) {
  TensorShape shape = x.shape();
  if (shape.dims() > 0) shape.set_dim(shape.dims() - 1, 2);
  return shape;
}

}  // namespace

REGISTER_OP("HacmExpmapProject")
    .Input("x: float")
    .Attr("curvature: float")
    .Attr("clip_radius: float = 0")
    .Output("y: float")
    .Output("factors: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, rows, factors;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &x));
      TF_RETURN_IF_ERROR(c->Subshape(x, 0, -1, &rows));
      TF_RETURN_IF_ERROR(c->Concatenate(rows, c->Vector(2), &factors));
      c->set_output(0, x);
      c->set_output(1, factors);
      return Status();
    })
    .Doc("y = project(expmap0(clip(x))) over the last axis of x [..., D]; factors [..., 2]: each row's "
         "(scale, slope) with y = scale x and dy/dx = scale I + slope x x^T.");

REGISTER_OP("HacmExpmapProjectGrad")
    .Input("x: float")
    .Input("factors: float")
    .Input("dy: float")
    .Output("dx: float")
    .SetShapeFn(ShapesOfInputs<0>)
    .Doc("Gradient of HacmExpmapProject: dx = scale dy + slope (x . dy) x.");

namespace {

class ExpmapProjectOp : public OpKernel {
 public:
  explicit ExpmapProjectOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("curvature", &curvature_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("clip_radius", &clip_radius_));
    OP_REQUIRES(ctx, curvature_ > 0, InvalidArgument("HacmExpmapProject: curvature must be positive, got ",
                                                     curvature_));
  }

  void Compute(OpKernelContext* ctx) override {
    int64_t rows, d;
    OP_REQUIRES_OK(ctx, RowsAndWidth("HacmExpmapProject", ctx->input(0), &rows, &d));
    Tensor *y, *factors;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, FactorShape(ctx->input(0)), &factors));
    if (d == 0) return;
    const float* x = ctx->input(0).flat<float>().data();
    float *yp = y->flat<float>().data(), *fp = factors->flat<float>().data();
    ParallelRows(ctx, rows, 8 * d, [&](int64_t begin, int64_t end) {
      hacm_poincare::expmap_project_rows(x, d, begin, end, curvature_, clip_radius_, yp, fp);
    });
  }

 private:
  float curvature_, clip_radius_;
};

class ExpmapProjectGradOp : public OpKernel {
 public:
  explicit ExpmapProjectGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const char* op = "HacmExpmapProjectGrad";
    int64_t rows, d;
    OP_REQUIRES_OK(ctx, RowsAndWidth(op, ctx->input(0), &rows, &d));
    OP_REQUIRES_OK(ctx, ExpectShape(op, "factors", ctx->input(1), FactorShape(ctx->input(0))));
    OP_REQUIRES_OK(ctx, ExpectShape(op, "dy", ctx->input(2), ctx->input(0).shape()));
    Tensor* dx;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &dx));
    if (d == 0) return;
    const float *x = ctx->input(0).flat<float>().data(), *fp = ctx->input(1).flat<float>().data();
    const float* dy = ctx->input(2).flat<float>().data();
    float* dxp = dx->flat<float>().data();
    ParallelRows(ctx, rows, 4 * d, [&](int64_t begin, int64_t end) {
      hacm_poincare::radial_gradient_rows(x, fp, dy, d, begin, end, dxp);
    });
  }
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("HacmExpmapProject").Device(DEVICE_CPU), ExpmapProjectOp);
REGISTER_KERNEL_BUILDER(Name("HacmExpmapProjectGrad").Device(DEVICE_CPU), ExpmapProjectGradOp);
