// TensorFlow ops HacmAttention (softmax(scale q k^T) v from the packed qkv projection, and the rows'
// log-sum-exp) and HacmAttentionGrad, on the kernels of attention_kernels.h (float32) and
// attention_amx.cc (bfloat16, AMX tiles); heads run in parallel on the op's intra-op thread pool.
#include "attention.h"
#include "op_util.h"

namespace {

using namespace hacm_ops;  // NOLINT
using tensorflow::shape_inference::DimensionHandle;

// qkv [B, N, 3, H, D], bias [3 H D] or [0] -> out [B, N, H, D], lse [B, H, N]
Status AttentionShapes(InferenceContext* c) {
  ShapeHandle bias;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &bias));
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
    .Input("qkv: T")
    .Input("bias: float")
    .Attr("scale: float")
    .Attr("T: {float, bfloat16}")
    .Output("out: T")
    .Output("lse: float")
    .SetShapeFn(AttentionShapes)
    .Doc("Multi-head attention softmax(scale q k^T) v from the packed projection qkv [B, N, 3, H, D] plus "
         "its bias [3 H D] (added in float32 and rounded to T; an empty bias: none): out [B, N, H, D] and "
         "the log-sum-exp of each row of scale q k^T, lse [B, H, N]. The N x N scores are never written "
         "to memory. bfloat16 runs on the AMX tiles (see HacmAmxReady), head dimension 32.");

REGISTER_OP("HacmAttentionGrad")
    .Input("qkv: T")
    .Input("bias: float")
    .Input("out: T")
    .Input("lse: float")
    .Input("d_out: T")
    .Attr("scale: float")
    .Attr("T: {float, bfloat16}")
    .Output("d_qkv: T")
    .Output("d_bias: float")
    .SetShapeFn(ShapesOfInputs<0, 1>)
    .Doc("Gradients of HacmAttention's out given d_out [B, N, H, D]: d_qkv [B, N, 3, H, D] and d_bias "
         "(float32, bias's shape: the sums of d_qkv over batch and tokens; empty without a bias). The "
         "weights are recomputed from qkv, bias and lse.");

REGISTER_OP("HacmAmxReady")
    .Output("ready: bool")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->Scalar());
      return Status();
    })
    .Doc("True when HacmAttention's bfloat16 kernels are built (AMX-BF16 CPU) and the OS grants this "
         "process the tile registers.");

namespace {


// The geometry of qkv [B, N, 3, H, D], checked (bfloat16: the AMX kernels' head dimension and tiles).
Status ReadGeometry(const Tensor& qkv, float scale, hacm_attention::Geometry* g) {
  const TensorShape& shape = qkv.shape();
  if (shape.dims() != 5 || shape.dim_size(2) != 3)
    return InvalidArgument("HacmAttention: qkv must be [batch, tokens, 3, heads, head_dim], got ",
                           shape.DebugString());
  *g = {shape.dim_size(0), shape.dim_size(1), shape.dim_size(3), shape.dim_size(4), scale};
  if (qkv.dtype() == tensorflow::DT_BFLOAT16) {
    if (!hacm_attention::amx_ready())
      return InvalidArgument("HacmAttention: bfloat16 needs the AMX kernels, which this CPU, build or OS "
                             "does not provide (HacmAmxReady is false)");
    if (!hacm_attention::amx_head_dim(g->dim))
      return InvalidArgument("HacmAttention: bfloat16 head dimension ", g->dim, " is not 32");
  } else if (!hacm_attention::supported_head_dim(g->dim)) {
    return InvalidArgument("HacmAttention: head dimension ", g->dim, " not one of 16, 32, 48, 64");
  }
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

// Both ops: the scale attribute, the checked geometry of input 0 (qkv) and bias (input 1; nullptr when
// empty), handed to Run.
class AttentionKernel : public OpKernel {
 public:
  explicit AttentionKernel(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
  }

  void Compute(OpKernelContext* ctx) final {
    hacm_attention::Geometry g;
    const float* bias;
    OP_REQUIRES_OK(ctx, Geometry(ctx, &g, &bias));
    Run(ctx, g, bias);
  }

 protected:
  virtual void Run(OpKernelContext* ctx, const hacm_attention::Geometry& g, const float* bias) = 0;

 private:
  Status Geometry(OpKernelContext* ctx, hacm_attention::Geometry* g, const float** bias) const {
    TF_RETURN_IF_ERROR(ReadGeometry(ctx->input(0), scale_, g));
    const Tensor& b = ctx->input(1);
    const int64_t width = 3 * g->heads * g->dim;
    if (b.dims() != 1 || (b.NumElements() != 0 && b.NumElements() != width))
      return InvalidArgument(type_string(), ": bias must be [", width, "] (3 x heads x head_dim of qkv ",
                             ctx->input(0).shape().DebugString(), ") or empty, got ", b.shape().DebugString());
    *bias = b.NumElements() ? b.flat<float>().data() : nullptr;
    return Status();
  }

  float scale_;
};

template <class T>
class AttentionOp : public AttentionKernel {
 public:
  using AttentionKernel::AttentionKernel;

 protected:
  void Run(OpKernelContext* ctx, const hacm_attention::Geometry& g, const float* bias) override {
    Tensor *out, *lse;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, OutShape(g), &out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, LseShape(g), &lse));
    if (out->NumElements() == 0) return;
    const auto* qkv = Data(ctx->input(0), T());
    auto* o = Data(out, T());
    float* l = lse->flat<float>().data();
    ForHeadRanges(ctx, g, 4.0, [&](int64_t begin, int64_t end) {
      hacm_attention::forward_heads(g, qkv, bias, begin, end, o, l);
    });
  }
};

template <class T>
class AttentionGradOp : public AttentionKernel {
 public:
  using AttentionKernel::AttentionKernel;

 protected:
  void Run(OpKernelContext* ctx, const hacm_attention::Geometry& g, const float* bias) override {
    OP_REQUIRES_OK(ctx, ExpectShape("HacmAttentionGrad", "out", ctx->input(2), OutShape(g)));
    OP_REQUIRES_OK(ctx, ExpectShape("HacmAttentionGrad", "lse", ctx->input(3), LseShape(g)));
    OP_REQUIRES_OK(ctx, ExpectShape("HacmAttentionGrad", "d_out", ctx->input(4), OutShape(g)));
    Tensor *d_qkv, *d_bias;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &d_qkv));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(1).shape(), &d_bias));
    if (bias) d_bias->flat<float>().setZero();
    if (d_qkv->NumElements() == 0) return;
    Tensor per_head;  // [B * H, 3, D]: each head's sums, added up over the batch below
    if (bias) {
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT, TensorShape({g.batch * g.heads * 3 * g.dim}),
                                             &per_head));
    }
    float* sums = bias ? per_head.flat<float>().data() : nullptr;
    const auto* qkv = Data(ctx->input(0), T());
    const auto* out = Data(ctx->input(2), T());
    const float* lse = ctx->input(3).flat<float>().data();
    const auto* d_out = Data(ctx->input(4), T());
    auto* grad = Data(d_qkv, T());
    ForHeadRanges(ctx, g, 10.0, [&](int64_t begin, int64_t end) {
      hacm_attention::backward_heads(g, qkv, bias, out, lse, d_out, begin, end, grad, sums);
    });
    if (!bias) return;
    float* total = d_bias->flat<float>().data();  // [3, H, D] from [B, H, 3, D]
    for (int64_t b = 0; b < g.batch; ++b)
      for (int64_t h = 0; h < g.heads; ++h)
        for (int64_t part = 0; part < 3; ++part) {
          const float* from = sums + ((b * g.heads + h) * 3 + part) * g.dim;
          float* to = total + (part * g.heads + h) * g.dim;
          for (int64_t d = 0; d < g.dim; ++d) to[d] += from[d];
        }
  }
};

class AmxReadyOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    Tensor* ready;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({}), &ready));
    ready->scalar<bool>()() = hacm_attention::amx_ready();
  }
};

}  // namespace

#define HACM_REGISTER(T)                                                                                   \
  REGISTER_KERNEL_BUILDER(Name("HacmAttention").Device(DEVICE_CPU).TypeConstraint<T>("T"), AttentionOp<T>); \
  REGISTER_KERNEL_BUILDER(Name("HacmAttentionGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),             \
                          AttentionGradOp<T>);
HACM_REGISTER(float)
HACM_REGISTER(bfloat16)
REGISTER_KERNEL_BUILDER(Name("HacmAmxReady").Device(DEVICE_CPU), AmxReadyOp);
