// TensorFlow ops HacmAttention (softmax(scale q k^T) v from the packed qkv projection, and the rows'
// log-sum-exp) and HacmAttentionGrad, on the kernels of attention_kernels.h; heads run in parallel on
// the op's intra-op thread pool.
#include "attention.h"
#include "op_util.h"

namespace {

using namespace hacm_ops;  // NOLINT
using tensorflow::shape_inference::DimensionHandle;

// qkv [B, N, 3, H, D] -> out [B, N, H, D], lse [B, H, N]
Status AttentionShapes(InferenceContext* c) {
  ShapeHandle qkv;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 5, &qkv));
  DimensionHandle three;
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(qkv, 2), 3, &three));
  c->set_output(0, c->MakeShape({c->Dim(qkv, 0), c->Dim(qkv, 1), c->Dim(qkv, 3), c->Dim(qkv, 4)}));
  c->set_output(1, c->MakeShape({c->Dim(qkv, 0), c->Dim(qkv, 3), c->Dim(qkv, 1)}));
  return Status();
}

}  // namespace

REGISTER_OP("HacmAttention")
    .Input("qkv: float")
    .Attr("scale: float")
    .Output("out: float")
    .Output("lse: float")
    .SetShapeFn(AttentionShapes)
    .Doc("Multi-head attention softmax(scale q k^T) v from the packed projection qkv [B, N, 3, H, D]: "
         "out [B, N, H, D] and the log-sum-exp of each row of scale q k^T, lse [B, H, N]. The N x N "
         "scores are never written to memory.");

REGISTER_OP("HacmAttentionGrad")
    .Input("qkv: float")
    .Input("out: float")
    .Input("lse: float")
    .Input("d_out: float")
    .Attr("scale: float")
    .Output("d_qkv: float")
    .SetShapeFn(ShapesOfInputs<0>)
    .Doc("Gradient d_qkv [B, N, 3, H, D] of HacmAttention's out given d_out [B, N, H, D]; the weights are "
         "recomputed from qkv and lse.");

namespace {

// The geometry of qkv [B, N, 3, H, D], checked.
Status ReadGeometry(const Tensor& qkv, float scale, hacm_attention::Geometry* g) {
  const TensorShape& shape = qkv.shape();
  if (shape.dims() != 5 || shape.dim_size(2) != 3)
    return InvalidArgument("HacmAttention: qkv must be [batch, tokens, 3, heads, head_dim], got ",
                           shape.DebugString());
  *g = {shape.dim_size(0), shape.dim_size(1), shape.dim_size(3), shape.dim_size(4), scale};
  if (!hacm_attention::supported_head_dim(g->dim))
    return InvalidArgument("HacmAttention: head dimension ", g->dim, " not one of 16, 32, 48, 64");
  return Status();
}

// fn(begin, end) over ranges of the B * H heads on the intra-op thread pool; cost: FLOPs per head.
template <class Fn>
void ForHeadRanges(OpKernelContext* ctx, const hacm_attention::Geometry& g, double flops_per_token_pair, Fn fn) {
  const double cost = flops_per_token_pair * g.tokens * g.tokens * g.dim;
  ParallelRows(ctx, g.batch * g.heads, static_cast<int64_t>(cost), fn);
}

TensorShape OutShape(const hacm_attention::Geometry& g) { return TensorShape({g.batch, g.tokens, g.heads, g.dim}); }
TensorShape LseShape(const hacm_attention::Geometry& g) { return TensorShape({g.batch, g.heads, g.tokens}); }

// Both ops: the scale attribute, and the checked geometry of input 0 (qkv).
class AttentionKernel : public OpKernel {
 public:
  explicit AttentionKernel(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
  }

 protected:
  Status Geometry(OpKernelContext* ctx, hacm_attention::Geometry* g) const {
    return ReadGeometry(ctx->input(0), scale_, g);
  }

 private:
  float scale_;
};

class AttentionOp : public AttentionKernel {
 public:
  using AttentionKernel::AttentionKernel;

  void Compute(OpKernelContext* ctx) override {
    hacm_attention::Geometry g;
    OP_REQUIRES_OK(ctx, Geometry(ctx, &g));
    Tensor *out, *lse;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, OutShape(g), &out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, LseShape(g), &lse));
    if (out->NumElements() == 0) return;
    const float* qkv = ctx->input(0).flat<float>().data();
    float* o = out->flat<float>().data();
    float* l = lse->flat<float>().data();
    ForHeadRanges(ctx, g, 4.0, [&](int64_t begin, int64_t end) {
      hacm_attention::forward_heads(g, qkv, begin, end, o, l);
    });
  }
};

class AttentionGradOp : public AttentionKernel {
 public:
  using AttentionKernel::AttentionKernel;

  void Compute(OpKernelContext* ctx) override {
    hacm_attention::Geometry g;
    OP_REQUIRES_OK(ctx, Geometry(ctx, &g));
    OP_REQUIRES_OK(ctx, ExpectShape("HacmAttentionGrad", "out", ctx->input(1), OutShape(g)));
    OP_REQUIRES_OK(ctx, ExpectShape("HacmAttentionGrad", "lse", ctx->input(2), LseShape(g)));
    OP_REQUIRES_OK(ctx, ExpectShape("HacmAttentionGrad", "d_out", ctx->input(3), OutShape(g)));
    Tensor* d_qkv;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &d_qkv));
    if (d_qkv->NumElements() == 0) return;
    const float* in[4];
    for (int i = 0; i < 4; ++i) in[i] = ctx->input(i).flat<float>().data();
    float* grad = d_qkv->flat<float>().data();
    ForHeadRanges(ctx, g, 10.0, [&](int64_t begin, int64_t end) {
      hacm_attention::backward_heads(g, in[0], in[1], in[2], in[3], begin, end, grad);
    });
  }
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("HacmAttention").Device(DEVICE_CPU), AttentionOp);
REGISTER_KERNEL_BUILDER(Name("HacmAttentionGrad").Device(DEVICE_CPU), AttentionGradOp);
