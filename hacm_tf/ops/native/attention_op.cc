// TensorFlow ops HacmAttention (softmax(q k^T) v and the rows' log-sum-exp) and HacmAttentionGrad,
// on the kernels of attention_kernels.h; heads run in parallel on the op's intra-op thread pool.
#include "attention.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"

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
using tensorflow::shape_inference::ShapeHandle;

Status SameAsFirstInput(InferenceContext* c, int outputs) {
  ShapeHandle shape;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 2, &shape));
  for (int i = 0; i < outputs; ++i) c->set_output(i, shape);
  return Status();
}

}  // namespace

REGISTER_OP("HacmAttention")
    .Input("q: float")
    .Input("k: float")
    .Input("v: float")
    .Output("out: float")
    .Output("lse: float")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(SameAsFirstInput(c, 1));
      ShapeHandle rows;
      TF_RETURN_IF_ERROR(c->Subshape(c->input(0), 0, -1, &rows));
      c->set_output(1, rows);
      return Status();
    })
    .Doc("softmax(q k^T) v over the last two axes [..., N, D] (q already scaled), and the log-sum-exp "
         "of each row of q k^T [..., N]. The N x N scores are never written to memory.");

REGISTER_OP("HacmAttentionGrad")
    .Input("q: float")
    .Input("k: float")
    .Input("v: float")
    .Input("out: float")
    .Input("lse: float")
    .Input("d_out: float")
    .Output("dq: float")
    .Output("dk: float")
    .Output("dv: float")
    .SetShapeFn([](InferenceContext* c) { return SameAsFirstInput(c, 3); })
    .Doc("Gradients (dq, dk, dv) of HacmAttention's out given d_out; weights recomputed from q, k, lse.");

namespace {

// Checks q, k, v and the extra inputs of equal shape [..., N, D]; returns (heads, N, D).
Status HeadGeometry(OpKernelContext* ctx, int same_shaped, int64_t* heads, int64_t* tokens, int64_t* dim) {
  const TensorShape& shape = ctx->input(0).shape();
  if (shape.dims() < 2) return InvalidArgument("HacmAttention: q must be [..., N, D], got ", shape.DebugString());
  for (int i = 1; i < same_shaped; ++i)
    if (ctx->input(i).shape() != shape)
      return InvalidArgument("HacmAttention: input ", i, " has shape ", ctx->input(i).shape().DebugString(),
                             ", q has ", shape.DebugString());
  *dim = shape.dim_size(shape.dims() - 1);
  *tokens = shape.dim_size(shape.dims() - 2);
  *heads = *tokens * *dim > 0 ? shape.num_elements() / (*tokens * *dim) : 0;
  if (!hacm_attention::supported_head_dim(*dim))
    return InvalidArgument("HacmAttention: head dimension ", *dim, " not one of 16, 32, 48, 64");
  return Status();
}

// fn(begin, end) over ranges of heads on the intra-op thread pool; cost: FLOPs per head.
template <class Fn>
void ForHeadRanges(OpKernelContext* ctx, int64_t heads, double cost, Fn fn) {
  ctx->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(heads, static_cast<int64_t>(cost), fn);
}

class AttentionOp : public OpKernel {
 public:
  explicit AttentionOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    int64_t heads, n, d;
    OP_REQUIRES_OK(ctx, HeadGeometry(ctx, 3, &heads, &n, &d));
    const TensorShape& shape = ctx->input(0).shape();
    TensorShape rows = shape;
    rows.RemoveLastDims(1);
    Tensor *out, *lse;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, rows, &lse));
    if (heads == 0) return;
    const float* q = ctx->input(0).flat<float>().data();
    const float* k = ctx->input(1).flat<float>().data();
    const float* v = ctx->input(2).flat<float>().data();
    float* o = out->flat<float>().data();
    float* l = lse->flat<float>().data();
    ForHeadRanges(ctx, heads, 4.0 * n * n * d, [&](int64_t begin, int64_t end) {
      hacm_attention::forward_heads(q, k, v, begin, end, n, d, o, l);
    });
  }
};

class AttentionGradOp : public OpKernel {
 public:
  explicit AttentionGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    int64_t heads, n, d;
    OP_REQUIRES_OK(ctx, HeadGeometry(ctx, 4, &heads, &n, &d));
    OP_REQUIRES(ctx, ctx->input(5).shape() == ctx->input(0).shape(),
                InvalidArgument("HacmAttentionGrad: d_out has shape ", ctx->input(5).shape().DebugString()));
    OP_REQUIRES(ctx, ctx->input(4).NumElements() == heads * n,
                InvalidArgument("HacmAttentionGrad: lse has shape ", ctx->input(4).shape().DebugString()));
    const TensorShape& shape = ctx->input(0).shape();
    Tensor *dq, *dk, *dv;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &dq));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, shape, &dk));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, shape, &dv));
    if (heads == 0) return;
    const float* in[6];
    for (int i = 0; i < 6; ++i) in[i] = ctx->input(i).flat<float>().data();
    float* gq = dq->flat<float>().data();
    float* gk = dk->flat<float>().data();
    float* gv = dv->flat<float>().data();
    ForHeadRanges(ctx, heads, 10.0 * n * n * d, [&](int64_t begin, int64_t end) {
      hacm_attention::backward_heads(in[0], in[1], in[2], in[3], in[4], in[5], begin, end, n, d, gq, gk, gv);
    });
  }
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("HacmAttention").Device(DEVICE_CPU), AttentionOp);
REGISTER_KERNEL_BUILDER(Name("HacmAttentionGrad").Device(DEVICE_CPU), AttentionGradOp);
