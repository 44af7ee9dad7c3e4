// TensorFlow op HacmPairwiseDistance: x [..., V, D] -> [..., V, V] Euclidean distances between the V
// points of each set, on pairwise_kernels.cc; sets run in parallel on the intra-op thread pool. Not
// differentiable (the spatial criterion reads it under stop_gradient).
#include "op_util.h"
#include "pairwise.h"

namespace {

using namespace hacm_ops;  // NOLINT

Status PairwiseShape(InferenceContext* c) {
  ShapeHandle x, prefix;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 2, &x));
  TF_RETURN_IF_ERROR(c->Subshape(x, 0, -1, &prefix));   // [..., V]
  ShapeHandle out;
  TF_RETURN_IF_ERROR(c->Concatenate(prefix, c->Vector(c->Dim(x, -2)), &out));
  c->set_output(0, out);
  return Status();
}

}  // namespace

REGISTER_OP("HacmPairwiseDistance")
    .Input("x: float")
    .Output("distances: float")
    .SetShapeFn(PairwiseShape)
    .Doc("Euclidean distances |x_i - x_j| between the V points of each set: x [..., V, D] -> [..., V, V].");

namespace {

class PairwiseDistanceOp : public OpKernel {
 public:
  explicit PairwiseDistanceOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    OP_REQUIRES(ctx, x.dims() >= 2,
                InvalidArgument("HacmPairwiseDistance: x must have at least two axes [..., V, D], got shape ",
                                x.shape().DebugString()));
    const int64_t v = x.dim_size(x.dims() - 2), d = x.dim_size(x.dims() - 1);
    TensorShape shape = x.shape();
    shape.set_dim(x.dims() - 1, v);
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &out));
    if (out->NumElements() == 0) return;
    const int64_t sets = out->NumElements() / (v * v);
    const float* xp = x.flat<float>().data();
    float* op = out->flat<float>().data();
    ParallelRows(ctx, sets, 3 * v * v * d / 2, [&](int64_t begin, int64_t end) {
      hacm_pairwise::distances(xp, v, d, begin, end, op);
    });
  }
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("HacmPairwiseDistance").Device(DEVICE_CPU), PairwiseDistanceOp);
