// Attention softmax(q k^T) v per head with the N x N scores kept in cache, never in memory.
//
// Each head's queries are taken R rows at a time: the R x N block of scores is computed with a
// register-blocked kernel (k read as panels of transposed rows, front to back; the scores in base 2,
// exponentials 2^x), normalised (softmax, exact, no online rescaling: a row block of N <= a few
// thousand keys fits the L1/L2 cache), and multiplied by v at once. The backward pass recomputes
// the block's weights from q, k and the saved log-sum-exp, keeps those of a group of blocks and adds
// them to dk and dv in one rank-kGroup update each, so neither pass keeps anything of size N x N.
//
// Portable C++ (GCC/Clang vector extensions): compiled for the host's instruction set, a vector is
// one AVX-512 register (16 floats) or one AVX2 register (8 floats).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "attention.h"
#if defined(__SSE__)
#include <immintrin.h>
#endif

namespace hacm_attention {

#ifdef __AVX512F__
constexpr int kLanes = 16;  // floats per vector: one register
constexpr int kRows = 8;    // queries per block: 2 x 8 accumulators + operands fit 32 registers
#elif defined(__AVX__)
constexpr int kLanes = 8;
constexpr int kRows = 6;    // 2 x 6 accumulators + operands fit 16 registers
#else
constexpr int kLanes = 4;   // SSE, NEON: 128-bit registers (wider vector types would be split in memory)
constexpr int kRows = 4;    // its block statistics fit one vector
#endif
typedef float vfloat __attribute__((vector_size(4 * kLanes)));
typedef int32_t vint __attribute__((vector_size(4 * kLanes)));

// one value in every lane (a broadcast; `vfloat{} + x` would add a dependent add before it)
inline vfloat splat(float x) {
#if defined(__AVX512F__)
  return vfloat(_mm512_set1_ps(x));
#elif defined(__AVX__)
  return vfloat(_mm256_set1_ps(x));
#else
  return vfloat{} + x;
#endif
}
inline vfloat load(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store(float* p, vfloat v) { std::memcpy(p, &v, sizeof(v)); }

// bfloat16 (the upper 16 bits of a float32, raw uint16_t): loaded exactly, stored rounded to nearest
// even (NaN stays NaN).
typedef uint16_t vbf16 __attribute__((vector_size(2 * kLanes)));
typedef uint32_t vuint __attribute__((vector_size(4 * kLanes)));
inline vfloat load(const uint16_t* p) {
  vbf16 h;
  std::memcpy(&h, p, sizeof(h));
  const vuint bits = __builtin_convertvector(h, vuint) << 16;
  vfloat v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}
inline void store(uint16_t* p, vfloat v) {
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(__m512(v)));
#else
  vuint bits;
  std::memcpy(&bits, &v, sizeof(bits));
  vuint rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  rounded = v == v ? rounded : (bits >> 16) | 0x40u;
  const vbf16 h = __builtin_convertvector(rounded, vbf16);
  std::memcpy(p, &h, sizeof(h));
#endif
}
// one element of either type as float32, and back (rounded as store)
inline float to_float(float x) { return x; }
inline float to_float(uint16_t x) {
  const uint32_t bits = uint32_t(x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
inline void put(float* p, float x) { *p = x; }
inline void put(uint16_t* p, float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  *p = x == x ? uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16) : uint16_t((bits >> 16) | 0x40u);
}

// A store that bypasses the caches (p aligned to a vector): for results the op writes once and does
// not read again, so their lines are not first read from memory. Ordered by stream_fence().
inline void stream(float* p, vfloat v) {
#if defined(__AVX512F__)
  _mm512_stream_ps(p, __m512(v));
#elif defined(__AVX__)
  _mm256_stream_ps(p, __m256(v));
#elif defined(__SSE__)
  _mm_stream_ps(p, __m128(v));
#else
  store(p, v);
#endif
}
inline void stream_fence() {
#if defined(__SSE__)
  _mm_sfence();
#endif
}

// The nearest integer per lane (|x| < 2^22).
inline vfloat round_to_integer(vfloat x) {
#ifdef __AVX512F__
  return vfloat(_mm512_roundscale_ps(__m512(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
  const vfloat magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  return (x + magic) - magic;
#endif
}

// p 2^n per lane for integer-valued n >= -252 (scalef takes any n; the exponent bits are built in two
// factors, so that n down to -252 stays representable).
inline vfloat times_power_of_two(vfloat p, vfloat n) {
#ifdef __AVX512F__
  return vfloat(_mm512_scalef_ps(__m512(p), __m512(n)));
#else
  vint half = __builtin_convertvector(n, vint) >> 1;
  vint other = __builtin_convertvector(n, vint) - half;
  vint b1 = (half + 127) << 23, b2 = (other + 127) << 23;
  vfloat s1, s2;
  std::memcpy(&s1, &b1, sizeof(b1));
  std::memcpy(&s2, &b2, sizeof(b2));
  return p * s1 * s2;
#endif
}

// exp(x) per lane, x <= 88: range reduction x = n ln2 + r, |r| <= ln2 / 2, then
// 1 + r + r^2 (c0 + c1 r + c2 r^2 + c3 r^3) (least-squares fit of the relative error: at most 1.7e-7,
// about one float32 rounding) times 2^n; inputs below -87 give 0 or a denormal.
inline vfloat vexp(vfloat x) {
  const vfloat ln2_hi = splat(0.693359375f), ln2_lo = splat(-2.12194440e-4f);
  x = x > splat(-100.f) ? x : splat(-100.f);
  const vfloat n = round_to_integer(x * splat(1.44269504088896341f));
  const vfloat r = (x - n * ln2_hi) - n * ln2_lo;
  vfloat p = splat(0.008333842270076275f);
  p = p * r + splat(0.04189859703183174f);
  p = p * r + splat(0.1666688621044159f);
  p = p * r + splat(0.49999141693115234f);
  p = p * (r * r) + r + splat(1.0f);
  return times_power_of_two(p, n);
}

// 2^x per lane as 2^n P(r), x = n + r with n the nearest integer and |r| <= 1/2 (exact); P's
// coefficients highest degree first. Inputs below -150 give 0.
template <int N>
inline vfloat exp2_by(vfloat x, const float (&c)[N]) {
#ifndef __AVX512F__
  x = x > splat(-150.f) ? x : splat(-150.f);  // for the rounding and the exponent bits
#endif
  const vfloat n = round_to_integer(x);
  const vfloat r = x - n;
  vfloat p = splat(c[0]);
  for (int i = 1; i < N; ++i) p = p * r + splat(c[i]);
  return times_power_of_two(p, n);
}

// 2^x per lane for finite x, P of degree 5 (fit of the relative error: at most 1.7e-7 with fused
// multiply-adds). The attention works in base 2 (its scores scaled by log2 e): no ln 2 reduction steps.
inline vfloat vexp2(vfloat x) {
  constexpr float c[] = {0.001326472731307149f, 0.009671512991189957f, 0.05550733581185341f,
                         0.24022242426872253f, 0.6931470036506653f, 1.0f};
  return exp2_by(x, c);
}

// 2^x per lane to a relative 1.0e-4 (P of degree 3, near-minimax), for results rounded to bfloat16
// (2^-8): the bfloat16 attention (the same function in both passes, so the recomputed weights still
// sum to one) and the bfloat16 GELU.
inline vfloat vexp2_coarse(vfloat x) {
  constexpr float c[] = {0.055008891969919205f, 0.2422109991312027f, 0.693282961845398f, 1.0f};
  return exp2_by(x, c);
}

inline float hsum(vfloat v) {
#ifdef __AVX512F__
  return _mm512_reduce_add_ps(__m512(v));
#else
  float s = 0.f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
#endif
}
inline float hmax(vfloat v) {
#ifdef __AVX512F__
  return _mm512_reduce_max_ps(__m512(v));
#else
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = std::max(m, v[i]);
  return m;
#endif
}

// log(x) per lane for finite x > 0 (NaN and inf pass through): x = m 2^e with m in [sqrt(1/2), sqrt(2)),
// log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172, by its series to s^9 (truncation below
// 1e-8 of log m); e ln 2 added in two parts.
inline vfloat vlog(vfloat x) {
  vint bits;
  std::memcpy(&bits, &x, sizeof(x));
  vint e = ((bits >> 23) & 255) - 127;
  vint mbits = (bits & 0x7fffff) | 0x3f800000;  // m in [1, 2)
  vfloat m;
  std::memcpy(&m, &mbits, sizeof(m));
  const vint big = m > splat(1.41421356f);   // -1 where m > sqrt(2): halve m, one more in e
  m = big ? m * splat(0.5f) : m;
  e -= big;
  const vfloat s = (m - splat(1.f)) / (m + splat(1.f)), s2 = s * s;
  vfloat p = splat(1.f / 9);
  p = p * s2 + splat(1.f / 7);
  p = p * s2 + splat(1.f / 5);
  p = p * s2 + splat(1.f / 3);
  const vfloat log_m = splat(2.f) * (s + s * s2 * p);
  const vfloat ef = __builtin_convertvector(e, vfloat);
  const vfloat y = ef * splat(0.693359375f) + (log_m + ef * splat(-2.12194440e-4f));
  return x == x && x < splat(INFINITY) ? y : x;
}

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Width of a panel of transposed rows: the columns one block of the product computes at once.
constexpr int kPanel = 2 * kLanes;

// out[R][cols] = a[R][D] b^T, with b given as panels (see pack_panels; cols a multiple of kPanel,
// out with row stride ld): each panel is read front to back, one D x kPanel block.
template <int D>
inline void rows_times_transposed(const float* a, const float* panels, int64_t ld, int64_t cols, float* out) {
  for (int64_t j = 0; j < cols; j += kPanel) {
    const float* panel = panels + j * D;
    vfloat acc0[kRows], acc1[kRows];
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) acc0[i] = acc1[i] = vfloat{};
#pragma GCC unroll 4
    for (int d = 0; d < D; ++d) {
      const vfloat b0 = load(panel + d * kPanel), b1 = load(panel + d * kPanel + kLanes);
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) {
        const vfloat x = splat(a[i * D + d]);
        acc0[i] += x * b0;
        acc1[i] += x * b1;
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
      store(out + i * ld + j, acc0[i]);
      store(out + i * ld + j + kLanes, acc1[i]);
    }
  }
}

// out[R][D] = w[R][0:n] b[n][D] (w with row stride ld).
template <int D>
inline void rows_times(const float* w, int64_t ld, const float* b, int64_t n, float* out) {
  constexpr int V = D / kLanes;
  vfloat acc[kRows][V];
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i)
    for (int c = 0; c < V; ++c) acc[i][c] = vfloat{};
#pragma GCC unroll 4  // (one key per iteration runs at about 70 % of the FMA rate, four at about 95 %)
  for (int64_t j = 0; j < n; ++j) {
    vfloat bj[V];
    for (int c = 0; c < V; ++c) bj[c] = load(b + j * D + c * kLanes);
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
      const vfloat x = splat(w[i * ld + j]);
      for (int c = 0; c < V; ++c) acc[i][c] += x * bj[c];
    }
  }
  for (int i = 0; i < kRows; ++i)
    for (int c = 0; c < V; ++c) store(out + i * D + c * kLanes, acc[i][c]);
}

// Keys per register tile of the rank updates (a power of two): J x D accumulators fill 16 vector
// registers (12 with 16 registers in all).
constexpr int tile_keys(int d) {
  const int vectors = d / kLanes, budget = kLanes == 16 ? 16 : 12;
  int keys = 1;
  while (keys * 2 * vectors <= budget) keys *= 2;
  return keys;
}

// acc[J][D] += w[rows][0:J]^T a[rows][D] (w with row stride ld): J x D sums in registers over the rows,
// each added in row order.
template <int D, int J>
inline void add_transposed_tile(const float* w, int64_t ld, const float* a, int64_t rows, float* acc) {
  constexpr int V = D / kLanes;
  vfloat sum[J][V];
#pragma GCC unroll 16
  for (int t = 0; t < J; ++t)
    for (int c = 0; c < V; ++c) sum[t][c] = load(acc + t * D + c * kLanes);
  for (int64_t i = 0; i < rows; ++i) {
    vfloat row[V];
    for (int c = 0; c < V; ++c) row[c] = load(a + i * D + c * kLanes);
    const float* wi = w + i * ld;
#pragma GCC unroll 16
    for (int t = 0; t < J; ++t) {
      const vfloat x = splat(wi[t]);
      for (int c = 0; c < V; ++c) sum[t][c] += x * row[c];
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < J; ++t)
    for (int c = 0; c < V; ++c) store(acc + t * D + c * kLanes, sum[t][c]);
}

// acc[n][D] += w[rows][0:n]^T a[rows][D] (w with row stride ld): a rank-`rows` update, a tile of keys
// at a time, so that acc is read and written once per call however many rows it adds.
template <int D>
inline void add_transposed_times(const float* w, int64_t ld, const float* a, int64_t rows, int64_t n, float* acc) {
  constexpr int J = tile_keys(D);
  int64_t j = 0;
  for (; j + J <= n; j += J) add_transposed_tile<D, J>(w + j, ld, a, rows, acc + j * D);
  for (; j < n; ++j) add_transposed_tile<D, 1>(w + j, ld, a, rows, acc + j * D);
}

// A head's rows inside a larger array: row j of the head is at base + j * stride (D floats).
struct Rows {
  const float* base;
  int64_t stride;
  const float* row(int64_t j) const { return base + j * stride; }
};
struct MutableRows {
  float* base;
  int64_t stride;
  float* row(int64_t j) const { return base + j * stride; }
  // every row starts on a vector boundary (TensorFlow's buffers are 64-byte aligned; a head's rows
  // are D floats at a multiple of D), so rows can be written with stream()
  bool vector_aligned() const {
    return reinterpret_cast<uintptr_t>(base) % sizeof(vfloat) == 0 && stride % kLanes == 0;
  }
};

// row i of `rows` (D floats from `from`, times `factor`), streamed where the rows are aligned.
template <int D>
inline void write_row(MutableRows rows, int64_t i, const float* from, vfloat factor, bool aligned) {
  float* to = rows.row(i);
  for (int d = 0; d < D; d += kLanes) {
    const vfloat x = load(from + d) * factor;
    if (aligned)
      stream(to + d, x);
    else
      store(to + d, x);
  }
}

// dense[n][D] = the head's rows.
template <int D>
inline void gather(Rows b, int64_t n, float* dense) {
  for (int64_t j = 0; j < n; ++j) std::memcpy(dense + j * D, b.row(j), sizeof(float) * D);
}

// the head's rows back into a larger array (streamed where aligned).
template <int D>
inline void scatter(const float* dense, int64_t n, MutableRows b) {
  const bool aligned = b.vector_aligned();
  for (int64_t j = 0; j < n; ++j) write_row<D>(b, j, dense + j * D, splat(1.f), aligned);
}

// The head's rows times `factor`, transposed into panels of kPanel columns, zero beyond column n:
// column j, element d at panels[(j / kPanel) * D * kPanel + d * kPanel + j % kPanel] (ld = n rounded
// up to kPanel).
template <int D>
inline void pack_panels(Rows b, int64_t n, int64_t ld, float factor, float* panels) {
  for (int64_t j = 0; j < n; ++j) {  // each source row read once, whole
    const float* row = b.row(j);
    float* column = panels + (j / kPanel) * D * kPanel + j % kPanel;
    for (int d = 0; d < D; ++d) column[d * kPanel] = row[d] * factor;
  }
  for (int64_t j = n; j < ld; ++j) {
    float* column = panels + (j / kPanel) * D * kPanel + j % kPanel;
    for (int d = 0; d < D; ++d) column[d * kPanel] = 0.f;
  }
}

// a block of up to kRows rows starting at row r0, times scale, zero-padded to kRows rows.
template <int D>
inline void copy_rows(Rows x, int64_t r0, int64_t rows, float scale, float* block) {
  const vfloat sv = splat(scale);
  for (int64_t i = 0; i < rows; ++i)
    for (int d = 0; d < D; d += kLanes) store(block + i * D + d, load(x.row(r0 + i) + d) * sv);
  std::fill(block + rows * D, block + kRows * D, 0.f);
}

// Reads rows [r0, r0 + kRows) of each array into cache ahead of their use; a head's rows are a few KB
// apart, which the hardware prefetchers do not follow.
template <int D>
inline void prefetch_rows(std::initializer_list<Rows> arrays, int64_t r0, int64_t n) {
  const int64_t r1 = std::min(r0 + kRows, n);
  for (const Rows& a : arrays)
    for (int64_t r = r0; r < r1; ++r)
      for (int d = 0; d < D; d += 64 / sizeof(float)) __builtin_prefetch(a.row(r) + d, 0);
}

// Head `index`'s rows in the packed qkv [B, N, 3, H, D].
template <class T>
inline HeadInput<T> head_input(const Geometry& g, const T* qkv, int64_t index) {
  const HeadAt at(g, index);
  return {qkv + at.packed, at.packed_stride, at.part};
}

// Head `index`'s q, k and v rows plus the projection's bias (float32 [3, H, D]) as the dense block
// biased[N][3][D] (in qkv's type, rounded as store() rounds): what the kernels read when the op adds
// the bias.
template <class T>
inline HeadInput<T> add_head_bias(const Geometry& g, const T* qkv, const float* bias, int64_t index, T* biased) {
  const HeadInput<T> in = head_input(g, qkv, index);
  const int64_t dim = g.dim, head = index % g.heads;
  for (int64_t j = 0; j < g.tokens; ++j) {
    const T* row = in.q + j * in.stride;
    T* to = biased + j * 3 * dim;
    for (int part = 0; part < 3; ++part) {
      const float* b = bias + (part * g.heads + head) * dim;
      for (int64_t d = 0; d < dim; d += kLanes)
        store(to + part * dim + d, load(row + part * in.part + d) + load(b + d));
    }
  }
  return {biased, 3 * dim, dim};
}

// sums[3][D] = head `index`'s dq, dk and dv rows in d_qkv [B, N, 3, H, D] summed over its tokens
// (float32): its share of the bias's gradient.
template <class T>
inline void sum_head_rows(const Geometry& g, const T* d_qkv, int64_t index, float* sums) {
  const HeadInput<T> in = head_input(g, d_qkv, index);
  const int64_t dim = g.dim;
  std::fill(sums, sums + 3 * dim, 0.f);
  for (int64_t j = 0; j < g.tokens; ++j)
    for (int part = 0; part < 3; ++part)
      for (int64_t d = 0; d < dim; d += kLanes) {
        float* to = sums + part * dim + d;
        store(to, load(to) + load(in.q + j * in.stride + part * in.part + d));
      }
}

// Query rows per group of the backward pass: its blocks' weights and their gradients are kept, then
// added to dk and dv in one rank-kGroup update each (dk and dv, n x D, read and written once per group).
constexpr int kGroup = 4 * kRows;

// Per-thread buffers for one head of n tokens.
struct Scratch {
  std::vector<float> kc, vc, kt, vt, dk, dv, scores, grads, qb, gb, ob;
  void resize(int64_t n, int d) {
    const int64_t ld = round_up(n, kPanel);
    for (auto* dense : {&kc, &vc, &dk, &dv}) dense->resize(n * d);
    kt.resize(d * ld);
    vt.resize(d * ld);
    scores.resize(kGroup * ld);
    grads.resize(kGroup * ld);
    qb.resize(kGroup * d);
    gb.resize(kGroup * d);
    ob.resize(kRows * d);
  }
};

// next[3] = head h + 1's k, v and q rows (R: a row type of base and stride) when that head is in the
// range [., end), else nullptr: read into cache while head h computes, k and v a block of rows per block
// of h, q only when the op adds the bias (the copy then reads them all; else a null base).
template <class R, class T>
inline const R* next_head(const Geometry& g, const T* qkv, bool biased, int64_t h, int64_t end, R* next) {
  if (h + 1 >= end) return nullptr;
  const HeadInput<T> in = head_input(g, qkv, h + 1);
  next[0] = {in.q + in.part, in.stride};
  next[1] = {in.q + 2 * in.part, in.stride};
  next[2] = {biased ? in.q : nullptr, in.stride};
  return next;
}

template <int D>
inline void prefetch_next(const Rows* next, int64_t r0, int64_t n) {
  if (!next) return;
  prefetch_rows<D>({next[0], next[1]}, r0, n);
  if (next[2].base) prefetch_rows<D>({next[2]}, r0, n);
}

constexpr float kLog2e = 1.44269504088896341f, kLn2 = 0.693147180559945309f;

// One head: o[n][D] = softmax(scale q k^T) v, lse[n] = log-sum-exp of each row of scale q k^T.
// The scores are computed in base 2, (scale q) (log2(e) k)^T, so that their exponentials are 2^x.
template <int D>
void forward_head(Rows q, Rows k, Rows v, int64_t n, float scale, MutableRows o, float* lse, Scratch& s,
                  const Rows* next = nullptr) {
  static_assert(kRows <= kLanes, "a block's row statistics fit one vector");
  const int64_t ld = round_up(n, kPanel);
  const int64_t vec_n = n / kLanes * kLanes;
  const bool o_aligned = o.vector_aligned();
  pack_panels<D>(k, n, ld, kLog2e, s.kt.data());  // for the scores
  gather<D>(v, n, s.vc.data());          // for the weighted sum
  for (int64_t r0 = 0; r0 < n; r0 += kRows) {
    const int64_t rows = std::min<int64_t>(kRows, n - r0);
    prefetch_rows<D>({q}, r0 + kRows, n);
    prefetch_next<D>(next, r0, n);
    copy_rows<D>(q, r0, rows, scale, s.qb.data());
    rows_times_transposed<D>(s.qb.data(), s.kt.data(), ld, ld, s.scores.data());
    vfloat maxima = splat(0.f), totals = splat(1.f);
    for (int i = 0; i < kRows; ++i) {
      float* row = s.scores.data() + i * ld;
      vfloat m = splat(-INFINITY);
      for (int64_t j = 0; j < vec_n; j += kLanes) {
        const vfloat x = load(row + j);
        m = x > m ? x : m;
      }
      float mx = hmax(m);
      for (int64_t j = vec_n; j < n; ++j) mx = std::max(mx, row[j]);
      vfloat sum = vfloat{};
      const vfloat mv = splat(mx);
      for (int64_t j = 0; j < ld; j += kLanes) {
        const vfloat e = vexp2(load(row + j) - mv);
        store(row + j, e);
        if (j < vec_n) sum += e;
      }
      float total = hsum(sum);
      for (int64_t j = vec_n; j < n; ++j) total += row[j];
      std::fill(row + n, row + ld, 0.f);
      maxima[i] = mx;
      totals[i] = total;
    }
    const vfloat row_lse = maxima * splat(kLn2) + vlog(totals), inverse_sums = splat(1.f) / totals;
    rows_times<D>(s.scores.data(), ld, s.vc.data(), n, s.ob.data());  // unnormalised weights
    for (int64_t i = 0; i < rows; ++i) {
      lse[r0 + i] = row_lse[i];
      const vfloat inverse = splat(inverse_sums[i]);
      write_row<D>(o, r0 + i, s.ob.data() + i * D, inverse, o_aligned);
    }
  }
}

// One head's gradients (dq, dk, dv) of o = softmax(scale q k^T) v given d_o, o and lse.
template <int D>
void backward_head(Rows q, Rows k, Rows v, Rows o, Rows d_o, const float* lse, int64_t n, float scale,
                   MutableRows dq, MutableRows dk, MutableRows dv, Scratch& s, const Rows* next = nullptr) {
  const int64_t ld = round_up(n, kPanel);
  const bool dq_aligned = dq.vector_aligned();
  pack_panels<D>(k, n, ld, kLog2e, s.kt.data());  // for the scores, in base 2 (as forward_head)
  gather<D>(k, n, s.kc.data());                    // for dq
  pack_panels<D>(v, n, ld, 1.f, s.vt.data());     // for the weights' gradient
  std::fill(s.dk.begin(), s.dk.end(), 0.f);
  std::fill(s.dv.begin(), s.dv.end(), 0.f);
  for (int64_t g0 = 0; g0 < n; g0 += kGroup) {
    const int64_t group_rows = std::min<int64_t>(kGroup, n - g0);
    for (int64_t r0 = g0; r0 < g0 + group_rows; r0 += kRows) {
      const int64_t rows = std::min<int64_t>(kRows, n - r0);
      float* qb = s.qb.data() + (r0 - g0) * D;  // this block's rows of the group's buffers
      float* gb = s.gb.data() + (r0 - g0) * D;
      float* scores = s.scores.data() + (r0 - g0) * ld;
      float* grads = s.grads.data() + (r0 - g0) * ld;
      prefetch_rows<D>({q, o, d_o}, r0 + kRows, n);
      prefetch_next<D>(next, r0, n);
      copy_rows<D>(q, r0, rows, scale, qb);   // the scaled queries the scores were made of
      copy_rows<D>(d_o, r0, rows, 1.f, gb);
      rows_times_transposed<D>(qb, s.kt.data(), ld, ld, scores);  // scores
      rows_times_transposed<D>(gb, s.vt.data(), ld, ld, grads);   // d weights
      for (int i = 0; i < kRows; ++i) {
        float* p = scores + i * ld;
        float* g = grads + i * ld;
        if (i >= rows) {  // padding rows: no weight, no gradient
          std::fill(p, p + ld, 0.f);
          std::fill(g, g + ld, 0.f);
          continue;
        }
        // rowsum(d_o * o), summed in d order as the kernel sums d_o . v: for a one-hot row of weights
        // (o = v_j) the two cancel exactly, as they do in exact arithmetic
        float row_term = 0.f;
        for (int d = 0; d < D; ++d) row_term += d_o.row(r0 + i)[d] * o.row(r0 + i)[d];
        const vfloat shift = splat(lse[r0 + i] * kLog2e), rt = splat(row_term);
        for (int64_t j = 0; j < ld; j += kLanes) {
          const vfloat w = vexp2(load(p + j) - shift);
          store(p + j, w);
          store(g + j, w * (load(g + j) - rt));
        }
        std::fill(p + n, p + ld, 0.f);
        std::fill(g + n, g + ld, 0.f);
      }
      rows_times<D>(grads, ld, s.kc.data(), n, s.ob.data());
      const vfloat sv = splat(scale);
      for (int64_t i = 0; i < rows; ++i)   // d(scale q) -> dq
        write_row<D>(dq, r0 + i, s.ob.data() + i * D, sv, dq_aligned);
    }
    add_transposed_times<D>(s.scores.data(), ld, s.gb.data(), group_rows, n, s.dv.data());
    add_transposed_times<D>(s.grads.data(), ld, s.qb.data(), group_rows, n, s.dk.data());
  }
  scatter<D>(s.dk.data(), n, dk);
  scatter<D>(s.dv.data(), n, dv);
}

}  // namespace hacm_attention
