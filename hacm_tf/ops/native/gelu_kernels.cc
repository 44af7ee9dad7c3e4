// Bias + exact GELU, forward and backward, one pass over memory each. Phi(z) = erfc(-z / sqrt 2) / 2
// with erfc as Eigen's float erfc (rational approximations on |x| <= 1 and 1 < |x| <= 11, a few ulps,
// accurate in the tails; the large-x ratio with one division), sharing exp(-z^2 / 2) with the density
// phi(z) of the gradient. For bfloat16 results a cheaper erfc accurate to 2e-4 (normal_coarse).
#include "gelu.h"

#include <type_traits>

#include "attention_kernels.h"  // vfloat, kLanes, load, store, splat, vexp

namespace hacm_gelu {

using hacm_attention::kLanes;
using hacm_attention::load;
using hacm_attention::put;
using hacm_attention::splat;
using hacm_attention::store;
using hacm_attention::to_float;
using hacm_attention::vexp;
using hacm_attention::vexp2_coarse;
using hacm_attention::vfloat;

namespace {

inline vfloat select(vfloat mask_source_a, vfloat mask_source_b, vfloat if_less, vfloat otherwise) {
  return mask_source_a < mask_source_b ? if_less : otherwise;
}

template <int N>
inline vfloat polynomial(vfloat x, const float (&c)[N]) {  // c[0] x^(N-1) + ... + c[N-1]
  vfloat p = splat(c[0]);
  for (int i = 1; i < N; ++i) p = p * x + splat(c[i]);
  return p;
}

// cdf = Phi(z), pdf = phi(z) per lane.
inline void normal(vfloat z, vfloat& cdf, vfloat& pdf) {
  constexpr float alpha[] = {5.61802298761904239654541015625e-04f, -4.91381669417023658752441406250e-03f,
                             2.67075151205062866210937500000e-02f, -1.12800106406211853027343750000e-01f,
                             3.76122951507568359375000000000e-01f, -1.12837910652160644531250000000e+00f};
  // Eigen's large-x ratio P(1/x^2) / (x Q(1/x^2)) with both polynomials times x^8: x P'(x^2) / Q'(x^2),
  // one division (the coefficients in reverse order; all positive, no cancellation)
  constexpr float gamma[] = {5.3971976041793823242187500e-02f, 3.2379078865051269531250000e-01f,
                             4.2920666933059692382812500e-01f, 1.0208116471767425537109375e-01f};
  constexpr float delta[] = {9.5662862062454223632812500e-02f, 6.2173241376876831054687500e-01f,
                             1.0000000000000000000000000e+00f, 3.9137163758277893066406250e-01f,
                             1.7251677811145782470703125e-02f};
  vfloat x = z * splat(-0.70710678118654752440f);  // Phi(z) = erfc(x) / 2
  x = select(x, splat(-11.f), splat(-11.f), x);
  x = select(splat(11.f), x, splat(11.f), x);
  const vfloat x2 = x * x;
  const vfloat erfc_small = x * polynomial(x2, alpha) + splat(1.f);
#ifdef __AVX512F__
  const vfloat x2_lo = vfloat(_mm512_fmsub_ps(__m512(x), __m512(x), __m512(x2)));  // x^2 = x2 + x2_lo exactly
#else
  const vfloat x2_lo = vfloat{};
#endif
  const vfloat e = vexp(-x2);  // exp(-z^2 / 2), up to x's clamp
  const vfloat ratio = x * polynomial(x2, gamma) / polynomial(x2, delta);
  const vfloat erfc_large = (e - e * x2_lo) * ratio + select(x, vfloat{}, splat(2.f), vfloat{});
  cdf = splat(0.5f) * select(splat(1.f), x2, erfc_large, erfc_small);
  pdf = e * splat(0.39894228040143267794f);
}

// 1 / x per lane to a relative 2^-14 (AVX-512; 1.5 2^-12 with AVX; exact otherwise).
inline vfloat approximate_reciprocal(vfloat x) {
#if defined(__AVX512F__)
  return vfloat(_mm512_rcp14_ps(__m512(x)));
#elif defined(__AVX__)
  return vfloat(_mm256_rcp_ps(__m256(x)));
#else
  return splat(1.f) / x;
#endif
}

// cdf = Phi(z), pdf = phi(z) per lane to a relative 2e-4 at most, for results rounded to bfloat16
// (2^-8): erfc(a) = t exp(-a^2) Q(t), t = 1 / (1 + a / 2) for a = |z| / sqrt 2 (the substitution of
// Numerical Recipes' erfcc; Q a degree-5 fit of erfc(a) exp(a^2) / t, relative 2.8e-5 over a <= 11), t
// by an approximate reciprocal and exp(-a^2), shared with phi, as 2^x of degree 3. No division.
inline void normal_coarse(vfloat z, vfloat& cdf, vfloat& pdf) {
  constexpr float q[] = {-0.06056152284145355f, -0.0017686274368315935f, 0.2951640188694f,
                         0.1934279352426529f, 0.2923136055469513f, 0.28139644861221313f};
  vfloat a = z * splat(0.70710678118654752440f);
  a = a < splat(0.f) ? -a : a;
  a = a < splat(11.f) ? a : splat(11.f);
  const vfloat t = approximate_reciprocal(splat(1.f) + splat(0.5f) * a);
  const vfloat e = vexp2_coarse(a * a * splat(-1.44269504088896341f));  // exp(-a^2)
  const vfloat tail = t * e * polynomial(t, q);                            // erfc(a)
  cdf = splat(0.5f) * (z < splat(0.f) ? tail : splat(2.f) - tail);
  pdf = e * splat(0.39894228040143267794f);
}

// The accurate normal() for float32 results, normal_coarse() for bfloat16 ones.
template <class T>
inline void normal_for(vfloat z, vfloat& cdf, vfloat& pdf) {
  if (std::is_same<T, uint16_t>::value)
    normal_coarse(z, cdf, pdf);
  else
    normal(z, cdf, pdf);
}

template <class T>
void forward(const T* h, const float* bias, int64_t f, int64_t begin, int64_t end, T* y) {
  const int64_t full = f / kLanes * kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const T* hr = h + r * f;
    T* yr = y + r * f;
    for (int64_t j = 0; j < full; j += kLanes) {
      const vfloat z = load(hr + j) + load(bias + j);
      vfloat cdf, pdf;
      normal_for<T>(z, cdf, pdf);
      store(yr + j, z * cdf);
    }
    for (int64_t j = full; j < f; ++j) {
      const float z = to_float(hr[j]) + bias[j];
      put(yr + j, 0.5f * z * std::erfc(-z * 0.70710678118654752440f));
    }
  }
}

template <class T>
void backward(const T* h, const float* bias, const T* dy, int64_t f, int64_t begin, int64_t end, T* dh,
              float* d_bias) {
  const int64_t full = f / kLanes * kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const T *hr = h + r * f, *gr = dy + r * f;
    T* dr = dh + r * f;
    for (int64_t j = 0; j < full; j += kLanes) {
      const vfloat z = load(hr + j) + load(bias + j);
      vfloat cdf, pdf;
      normal_for<T>(z, cdf, pdf);
      const vfloat g = load(gr + j) * (cdf + z * pdf);
      store(dr + j, g);
      store(d_bias + j, load(d_bias + j) + g);
    }
    for (int64_t j = full; j < f; ++j) {
      const float z = to_float(hr[j]) + bias[j];
      const float cdf = 0.5f * std::erfc(-z * 0.70710678118654752440f);
      const float pdf = std::exp(-0.5f * z * z) * 0.39894228040143267794f;
      const float g = to_float(gr[j]) * (cdf + z * pdf);
      put(dr + j, g);
      d_bias[j] += g;
    }
  }
}

}  // namespace

void forward_rows(const float* h, const float* bias, int64_t f, int64_t begin, int64_t end, float* y) {
  forward(h, bias, f, begin, end, y);
}
void forward_rows(const uint16_t* h, const float* bias, int64_t f, int64_t begin, int64_t end, uint16_t* y) {
  forward(h, bias, f, begin, end, y);
}
void backward_rows(const float* h, const float* bias, const float* dy, int64_t f, int64_t begin, int64_t end,
                   float* dh, float* d_bias) {
  backward(h, bias, dy, f, begin, end, dh, d_bias);
}
void backward_rows(const uint16_t* h, const float* bias, const uint16_t* dy, int64_t f, int64_t begin,
                   int64_t end, uint16_t* dh, float* d_bias) {
  backward(h, bias, dy, f, begin, end, dh, d_bias);
}

void add_bias_rows(const uint16_t* h, const float* bias, int64_t f, int64_t begin, int64_t end, uint16_t* y) {
  const int64_t full = f / kLanes * kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const uint16_t* hr = h + r * f;
    uint16_t* yr = y + r * f;
    for (int64_t j = 0; j < full; j += kLanes) store(yr + j, load(hr + j) + load(bias + j));
    for (int64_t j = full; j < f; ++j) put(yr + j, to_float(hr[j]) + bias[j]);
  }
}

void add_column_sums(const uint16_t* dy, int64_t f, int64_t begin, int64_t end, float* sums) {
  const int64_t full = f / kLanes * kLanes;
  for (int64_t r = begin; r < end; ++r) {
    const uint16_t* gr = dy + r * f;
    for (int64_t j = 0; j < full; j += kLanes) store(sums + j, load(sums + j) + load(gr + j));
    for (int64_t j = full; j < f; ++j) sums[j] += to_float(gr[j]);
  }
}

}  // namespace hacm_gelu
