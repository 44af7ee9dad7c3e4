"""Native training kernels: attention whose N x N scores never reach memory, LayerNorm, bias + GELU,
pairwise distances, the Poincare-ball map.

A TensorFlow custom op (``attention_op.cc`` on the kernels of ``attention_kernels.h``) that reads
the packed qkv projection [B, N, 3, H, D] and writes [B, N, H, D] (no transposes), built on
first use with the machine's C++ compiler for its own CPU (``-march=native``), cached under
``$HACM_TF_CACHE`` (default ``~/.cache/hacm_tf``) by a key of the sources, TensorFlow version,
compiler and CPU features, so a build is reused only where it was made. Each head's queries are
taken eight rows at a time: scores, softmax and the product with v happen in cache; the backward
pass recomputes the weights from q, k and the saved log-sum-exp and adds a group of 32 query rows'
weights to dk and dv at once. Heads run in parallel on
TensorFlow's intra-op threads. The LayerNorm op (``layer_norm_op.cc``) makes one pass per row
statistic while the row sits in cache, in both passes; the bias + GELU op (``gelu_op.cc``) adds the
MLP's first bias and applies the exact GELU in one pass, and its gradient sums the bias gradient in
the same pass; the pairwise-distance op (``pairwise_op.cc``, for the spatial criterion's joints)
subtracts and squares in registers what a broadcast formula writes to memory as [..., V, V, D]; the
Poincare-ball map (``poincare_op.cc``) takes each token's norm, exponential map and projection
while the row is in cache, and its gradient is one pass from the rows' scale factors.

On CPUs with AMX-BF16 the attention op also takes bfloat16 (``attention_amx.cc``, head dimension
32): its four products run on the AMX tiles (bfloat16 pairs summed in float32), the softmax and its
gradient in float32 vectors, the weights rounded to bfloat16 before their products as a bfloat16
matmul would; Linux grants the tile registers on request (``HacmAmxReady``, ``amx_available``).

Optional by design: under XLA compilation (``--jit_compile``), without a compiler, with
``HACM_TF_NATIVE_KERNELS=0``, for head dimensions other than 16/32/48/64, for bfloat16 inputs without
AMX or with head dimensions other than 32, or if the build fails (the reason is logged once), the
callers (hacm_tf.ops.fused) use the XLA-fused path, which gives the same results to float32 rounding
(bfloat16: to its rounding). Training graphs only: inference and exported
SavedModels never contain the ops.

    python -m hacm_tf.ops.native      # build now (about 30 s) and print the library's path
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import tensorflow as tf
from tensorflow.python.ops import control_flow_util

SOURCE_DIR = Path(__file__).resolve().parent
KERNEL_SOURCES = ("attention_kernels.cc", "attention_amx.cc", "layer_norm_kernels.cc",   # for the host CPU
                  "gelu_kernels.cc", "pairwise_kernels.cc", "poincare_kernels.cc", "residual_kernels.cc")
OP_SOURCES = ("attention_op.cc", "layer_norm_op.cc", "gelu_op.cc", "pairwise_op.cc",   # TensorFlow ops
              "poincare_op.cc", "residual_op.cc")
SOURCES = (("attention.h", "attention_kernels.h", "layer_norm.h", "gelu.h", "pairwise.h", "poincare.h",
            "residual.h", "op_util.h")
           + KERNEL_SOURCES + OP_SOURCES)
SWITCH_ENV = "HACM_TF_NATIVE_KERNELS"
CACHE_ENV = "HACM_TF_CACHE"
HEAD_DIMS = (16, 32, 48, 64)
AMX_HEAD_DIMS = (32,)   # the bfloat16 attention kernels (attention_amx.cc)
LIBRARY_NAME = "hacm_native_ops.so"
# kernels for the host CPU; the op's TensorFlow headers with the compiler's defaults (Eigen's headers
# do not compile with every instruction set -march=native may enable)
KERNEL_FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-std=c++17", "-fPIC", "-w")
OP_FLAGS = ("-O2", "-fPIC", "-w")

_log = logging.getLogger(__name__)
tf.no_gradient("HacmPairwiseDistance")   # read under stop_gradient (the spatial criterion)
_lock = threading.Lock()
_state: dict = {}


class NativeBuildError(RuntimeError):
    """The native kernels could not be built; the message carries the compiler's output."""


def enabled() -> bool:
    """False when ``HACM_TF_NATIVE_KERNELS`` is 0 / false / off."""
    return os.environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def compiler() -> str | None:
    """The C++ compiler: ``$CXX``, else g++, c++ or clang++ on PATH; None if there is none."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    return next((path for path in map(shutil.which, ("g++", "c++", "clang++")) if path), None)


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _build_key(cxx: str) -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((SOURCE_DIR / name).read_bytes())
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    for part in (tf.__version__, version, _cpu_features(), " ".join(KERNEL_FLAGS + OP_FLAGS)):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def library_path(cxx: str | None = None) -> Path:
    """Where the library for this source, TensorFlow, compiler and CPU is (or will be) built."""
    cxx = cxx or compiler()
    if cxx is None:
        raise NativeBuildError("no C++ compiler (set CXX or install g++)")
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hacm_tf").expanduser()
    return _writable(root) / "native" / _build_key(cxx) / LIBRARY_NAME


def _writable(root: Path) -> Path:
    """``root``, or a folder in the temporary directory when ``root`` cannot be created or written."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"hacm_tf_cache_{os.getuid()}"
    _log.info("cache folder %s is not writable; building in %s", root, fallback)
    return fallback


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise NativeBuildError(f"{' '.join(command[:2])} ... failed ({result.returncode}):\n{tail}")


def build(force: bool = False) -> Path:
    """Compiles the op library unless an identical build exists; returns its path.

    Safe across processes (a file lock; the library appears by an atomic rename, complete or not at
    all). Raises NativeBuildError with the compiler's message on failure.
    """
    cxx = compiler()
    target = library_path(cxx)
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() and not force:
            return target
        _log.info("building the native kernels for this CPU (once): %s", target)
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            objects = []
            for sources, flags in ((KERNEL_SOURCES, KERNEL_FLAGS), (OP_SOURCES, OP_FLAGS + tuple(
                    tf.sysconfig.get_compile_flags()))):
                for name in sources:
                    objects.append(os.path.join(work, name + ".o"))
                    _run([cxx, *flags, "-c", str(SOURCE_DIR / name), "-o", objects[-1]])
            library = os.path.join(work, LIBRARY_NAME)
            _run([cxx, "-shared", *objects, "-o", library, *tf.sysconfig.get_link_flags()])
            os.replace(library, target)
    return target


@tf.autograph.experimental.do_not_convert   # called while tracing: the build runs as plain Python
def load():
    """The loaded op module, or None when the kernels are off or cannot be built (reason logged once)."""
    if not enabled():
        return None
    with _lock:
        if "module" not in _state:
            try:
                _state["module"] = tf.load_op_library(str(build()))
            except (NativeBuildError, OSError, tf.errors.OpError) as error:
                _log.warning("native kernels unavailable, using the XLA path: %s", error)
                _state["module"] = None
        return _state["module"]


def in_xla_context() -> bool:
    """True while tracing a function XLA compiles (``jit_compile=True``), where custom ops cannot run."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def available(head_dim: int | None = None) -> bool:
    """True when the ops are loaded, usable here (not under XLA compilation) and, if given, built for
    ``head_dim``."""
    return (head_dim is None or head_dim in HEAD_DIMS) and not in_xla_context() and load() is not None


def amx_available(head_dim: int | None = None) -> bool:
    """True when ``available()`` and the bfloat16 attention kernels run here: built for an AMX-BF16 CPU,
    the tile registers granted to this process by the OS, and ``head_dim`` (if given) 32."""
    if (head_dim is not None and head_dim not in AMX_HEAD_DIMS) or not available():
        return False
    with _lock:
        if "amx" not in _state:
            with tf.init_scope():   # an eager answer even while a graph is traced
                _state["amx"] = bool(_state["module"].hacm_amx_ready().numpy())
        return _state["amx"]


def attention_packed(qkv: tf.Tensor, scale: float, bias=None) -> tf.Tensor:
    """Multi-head softmax(scale q k^T) v from the packed projection: qkv [B, N, 3, H, D] -> [B, N, H, D].

    The layout one qkv matmul produces and the output projection takes, so no transposes around it.
    ``bias`` [3 H D] (the projection's, None: none) is added to q, k and v inside the op, in float32
    and rounded to qkv's dtype, as a bias addition before it would (its gradient, the sums of d_qkv,
    comes from the gradient op too). Differentiable (the gradient op recomputes the weights and returns
    d_qkv in the same layout). bfloat16 inputs run on the AMX tiles where ``amx_available(D)``
    (products of bfloat16 pairs summed in float32, the softmax in float32, the weights rounded to
    bfloat16 before their product with v); other dtypes are computed in float32 and cast back.
    Requires ``available(D)``.
    """
    ops, scale, dtype = load(), float(scale), qkv.dtype
    compute = dtype if dtype == tf.bfloat16 and amx_available(qkv.shape[-1]) else tf.float32

    @tf.custom_gradient
    def packed(qkv, bias):
        out, lse = ops.hacm_attention(qkv, bias, scale=scale)
        return out, lambda d_out: ops.hacm_attention_grad(qkv, bias, out, lse, d_out, scale=scale)

    bias = tf.zeros([0], tf.float32) if bias is None else tf.cast(bias, tf.float32)
    return tf.cast(packed(tf.cast(qkv, compute), bias), dtype)


def layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float, out_dtype=None) -> tf.Tensor:
    """LayerNorm over the last axis: x [..., D] float32 or bfloat16, gamma and beta [D] -> [..., D] in
    ``out_dtype`` (default x's; bfloat16 also from a float32 x: the normalised stream of a bfloat16
    branch, written once); the maths and the parameters in float32.

    One pass per row statistic while the row is in cache; the gradient keeps x and the rows' mean
    and 1 / std, and returns dx in x's dtype. Requires ``available()``.
    """
    return _normalise(x, gamma, beta, epsilon, out_dtype, residual=False)


def layer_norm_residual(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float, out_dtype=None):
    """(x, layer_norm(x, gamma, beta, epsilon, out_dtype)) for a pre-norm residual block, whose residual
    addition takes the first result: the gradient x receives there is added to the LayerNorm's in the
    LayerNorm's gradient pass, instead of TensorFlow summing the two in a pass of its own. x float32
    or bfloat16 [..., D]. Requires ``available()``."""
    return _normalise(x, gamma, beta, epsilon, out_dtype, residual=True)


def _normalise(x, gamma, beta, epsilon, out_dtype, residual):
    """layer_norm, or with ``residual`` layer_norm_residual's (x, layer_norm)."""
    ops, epsilon = load(), float(epsilon)
    out_dtype = tf.as_dtype(out_dtype or x.dtype)
    if x.dtype == tf.bfloat16 and out_dtype != tf.bfloat16:
        y = tf.cast(_normalise(x, gamma, beta, epsilon, None, residual=False), out_dtype)
        return (x, y) if residual else y

    @tf.custom_gradient
    def normalise(x, gamma, beta):
        y, mean, rstd = ops.hacm_layer_norm(x, gamma, beta, epsilon=epsilon, U=out_dtype)
        if residual:
            return (tf.identity(x), y), lambda d_x, dy: ops.hacm_layer_norm_grad(x, gamma, mean, rstd, dy, [d_x])
        return y, lambda dy: ops.hacm_layer_norm_grad(x, gamma, mean, rstd, dy, [])

    return normalise(x, tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32))


def residual_add(x: tf.Tensor, branch: tf.Tensor, scale=None, bias=None) -> tf.Tensor:
    """x + scale[b] * (branch + bias): the float32 residual stream x [B, ..., D] plus a float32 or bfloat16
    branch of its shape with the bias [D] of the layer that made it (None: none), scaled per sample by
    ``scale`` [B] (drop-path factors; None: 1), in one pass; the gradients of the branch (scaled,
    rounded to its dtype) and of the bias in one pass. Requires ``available()``."""
    ops = load()
    factors = tf.zeros([0], tf.float32) if scale is None else tf.cast(scale, tf.float32)

    @tf.custom_gradient
    def add(x, branch, bias):
        def grad(dy):
            d_branch, d_bias = ops.hacm_residual_add_grad(dy, factors, T=branch.dtype, bias=with_bias)
            return dy, d_branch, d_bias
        return ops.hacm_residual_add(x, branch, bias, factors), grad

    with_bias = bias is not None
    return add(x, branch, tf.cast(bias, tf.float32) if with_bias else tf.zeros([0], tf.float32))


def bias_gelu(h: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """Exact GELU of h + bias: h [..., F] float32 or bfloat16, bias [F] -> [..., F] in h's dtype.

    One pass over memory each way (the bias addition and its gradient's column sums included; the
    maths in float32, rounded once); the gradient keeps h. Requires ``available()``.
    """
    ops = load()

    @tf.custom_gradient
    def activate(h, bias):
        return ops.hacm_bias_gelu(h, bias), lambda dy: ops.hacm_bias_gelu_grad(h, bias, dy)

    return activate(h, tf.cast(bias, tf.float32))


def bias_add(h: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """h + bias for bfloat16 h [..., F] and bias [F] -> [..., F] bfloat16, added in float32.

    One pass each way: the gradient of h is dy itself, that of bias dy's column sums in float32
    (TensorFlow's bfloat16 BiasAdd and BiasAddGrad convert one element at a time). Requires
    ``available()``.
    """
    ops = load()

    @tf.custom_gradient
    def add(h, bias):
        return ops.hacm_bias_add(h, bias), lambda dy: (dy, ops.hacm_bias_add_grad(dy))

    return add(h, tf.cast(bias, tf.float32))


def pairwise_distance(x: tf.Tensor) -> tf.Tensor:
    """Euclidean distances |x_i - x_j| between the V points of each set: x [..., V, D] float32 ->
    [..., V, V], from the differences in registers (the broadcast formula writes [..., V, V, D]). Not
    differentiable. Requires ``available()``."""
    return load().hacm_pairwise_distance(x)


def expmap_project(x: tf.Tensor, c: float, clip_radius: float = 0.0) -> tf.Tensor:
    """The Poincare-ball map of hacm_tf.ops.hyperbolic.expmap_project: x [..., D] float32 -> [..., D],
    one pass per step while each row is in cache (its float32 steps in the same order, the norms summed
    in another order). The gradient, dx = scale dy + slope (x . dy) x, reads x, dy and the rows'
    factors once. Requires ``available()``."""
    ops, c, clip_radius = load(), float(c), float(clip_radius)

    @tf.custom_gradient
    def mapped(x):
        y, factors = ops.hacm_expmap_project(x, curvature=c, clip_radius=clip_radius)
        return y, lambda dy: ops.hacm_expmap_project_grad(x, factors, dy)

    return mapped(x)


def attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """softmax(q k^T) v over the last two axes: [..., N, D] x 3 -> [..., N, D] (q already scaled).

    Each leading index is one head (packed with stack; attention_packed avoids that copy).
    """
    shape = tf.shape(q)
    tokens, dim = q.shape[-2], q.shape[-1]
    qkv = tf.stack([tf.reshape(t, [-1, tokens, dim]) for t in (q, k, v)], axis=2)[:, :, :, None, :]
    return tf.reshape(attention_packed(qkv, 1.0), shape)
