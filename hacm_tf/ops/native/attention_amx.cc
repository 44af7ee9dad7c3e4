// Attention in bfloat16 on the AMX tiles (AMX-BF16): the products q k^T, weights v and those of the
// gradient as 16 x 16 float32 tiles of bfloat16 pair products; the softmax and its gradient in float32
// AVX-512 (attention_kernels.h's exp2 and log). The maths of the float32 kernels: scores in base 2,
// the N x N block of a group of queries in cache, never in memory, and the backward pass recomputing
// the weights from the saved log-sum-exp. The weights and the scores' gradient are rounded to bfloat16
// before their products, as a bfloat16 matmul of them would be. Head dimension 32 (one tile row).
//
// Tile operands (all tiles 16 rows of 64 bytes): an A operand is 16 rows of 32 bfloat16 (row-major);
// a B operand holds 32 x 16 bfloat16 as 16 rows of pairs, row p = (b[2p][0], b[2p + 1][0], b[2p][1],
// ...); the accumulator is 16 x 16 float32.
#include "attention.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__) && defined(__linux__)
#define HACM_AMX 1
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>

#include "attention_kernels.h"
#endif

namespace hacm_attention {

#ifndef HACM_AMX

bool amx_ready() { return false; }
bool amx_head_dim(int64_t) { return false; }
void forward_heads(const Geometry&, const uint16_t*, const float*, int64_t, int64_t, uint16_t*, float*) {}
void backward_heads(const Geometry&, const uint16_t*, const float*, const uint16_t*, const float*, const uint16_t*,
                    int64_t, int64_t, uint16_t*, float*) {}

#else

namespace {

typedef uint16_t bf16;
constexpr int kDim = 32;   // head dimension: one A-operand row of bfloat16
constexpr int kTile = 16;  // rows of a tile, float32 columns of an accumulator
constexpr int kKeys = 32;  // keys per A-operand row of weights; the padded key count is a multiple

// Linux gives a process the tile registers' state on request (ARCH_REQ_XCOMP_PERM, XTILEDATA).
bool request_tile_data() {
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

// This thread's tiles, all 16 rows of 64 bytes, for the scope's lifetime.
class Tiles {
 public:
  Tiles() {
    struct alignas(64) {
      uint8_t palette, start_row, reserved[14];
      uint16_t colsb[16];
      uint8_t rows[16];
    } config = {};
    config.palette = 1;
    for (int t = 0; t < 8; ++t) config.colsb[t] = 64, config.rows[t] = kTile;
    _tile_loadconfig(&config);
  }
  ~Tiles() { _tile_release(); }
  Tiles(const Tiles&) = delete;
  Tiles& operator=(const Tiles&) = delete;
};

// a and b as bfloat16 pairs: p = a0 b0 a1 b1 ... a15 b15 (one row of a B operand).
inline void narrow_pairs(bf16* p, vfloat a, vfloat b) {
  alignas(64) static const uint16_t order[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i ab = (__m512i)_mm512_cvtne2ps_pbh(__m512(b), __m512(a));  // a in the low half
  _mm512_storeu_si512(p, _mm512_permutexvar_epi16(_mm512_load_si512(order), ab));
}
// lanes of keys j .. j + 15 below n.
inline __mmask16 valid_keys(int64_t j, int64_t n) {
  return j + kLanes <= n ? __mmask16(0xffff) : j >= n ? __mmask16(0) : __mmask16((1u << (n - j)) - 1);
}
inline vfloat zero_outside(__mmask16 m, vfloat x) { return vfloat(_mm512_maskz_mov_ps(m, __m512(x))); }

// fn(j, mask) over the vectors of keys j = 0, 16, ... < ld: mask all ones below n / 16 * 16 (no
// masking needed), then the lanes of keys below n.
template <class Fn>
inline void over_keys(int64_t n, int64_t ld, Fn fn) {
  const int64_t full = n / kLanes * kLanes;
  for (int64_t j = 0; j < full; j += kLanes) fn(j, std::true_type());
  for (int64_t j = full; j < ld; j += kLanes) fn(j, valid_keys(j, n));
}
inline vfloat zero_outside(std::true_type, vfloat x) { return x; }

template <class T>
struct Strided {  // a head's rows inside a larger array: row j at base + j * stride
  T* base;
  int64_t stride;
  T* row(int64_t j) const { return base + j * stride; }
  int64_t bytes() const { return stride * sizeof(T); }
};
typedef Strided<const bf16> BRows;
typedef Strided<bf16> MutableBRows;

// rows [r0, r0 + count) of each array (below n) into cache ahead of their use: a head's rows are a few
// KB apart, which the hardware prefetchers do not follow. One line per row (kDim bfloat16 = 64 bytes).
inline void prefetch_rows(std::initializer_list<BRows> arrays, int64_t r0, int64_t count, int64_t n) {
  for (const BRows& a : arrays)
    for (int64_t r = r0; r < std::min(r0 + count, n); ++r)
      _mm_prefetch(reinterpret_cast<const char*>(a.row(r)), _MM_HINT_T0);
}

// rows [r0, r0 + rows) of x as a dense [count][kDim] block, zero beyond `rows`.
inline void copy_block(BRows x, int64_t r0, int64_t rows, int count, bf16* block) {
  for (int64_t i = 0; i < rows; ++i) std::memcpy(block + i * kDim, x.row(r0 + i), sizeof(bf16) * kDim);
  std::fill(block + rows * kDim, block + count * kDim, bf16(0));
}

// A 16 x 16 matrix of 32-bit elements (one row per register) transposed in registers.
inline void transpose16(__m512i m[16]) {
  __m512i t[16];
  for (int k = 0; k < 16; k += 2) {  // lanes of 4: (r2k[4l + 0], r2k+1[4l + 0], r2k[4l + 1], r2k+1[4l + 1]) ...
    t[k] = _mm512_unpacklo_epi32(m[k], m[k + 1]);
    t[k + 1] = _mm512_unpackhi_epi32(m[k], m[k + 1]);
  }
  for (int k = 0; k < 16; k += 4) {  // m[k + c], lane l: column 4l + c of rows k .. k + 3
    m[k] = _mm512_unpacklo_epi64(t[k], t[k + 2]);
    m[k + 1] = _mm512_unpackhi_epi64(t[k], t[k + 2]);
    m[k + 2] = _mm512_unpacklo_epi64(t[k + 1], t[k + 3]);
    m[k + 3] = _mm512_unpackhi_epi64(t[k + 1], t[k + 3]);
  }
  for (int c = 0; c < 4; ++c) {  // column 4l + c: lane l of m[c], m[4 + c], m[8 + c], m[12 + c]
    const __m512i v0 = _mm512_shuffle_i32x4(m[c], m[4 + c], 0x44), v1 = _mm512_shuffle_i32x4(m[c], m[4 + c], 0xEE);
    const __m512i v2 = _mm512_shuffle_i32x4(m[8 + c], m[12 + c], 0x44);
    const __m512i v3 = _mm512_shuffle_i32x4(m[8 + c], m[12 + c], 0xEE);
    t[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    t[4 + c] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
    t[8 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    t[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
  }
  for (int k = 0; k < 16; ++k) m[k] = t[k];
}

// rows [r0, r0 + 16) of x (kDim bfloat16 = 16 pairs each) as registers, zero from row r0 + rows.
inline void load_pair_rows(BRows x, int64_t r0, int64_t rows, __m512i m[16]) {
  for (int i = 0; i < 16; ++i) m[i] = i < rows ? _mm512_loadu_si512(x.row(r0 + i)) : _mm512_setzero_si512();
}

// The head's rows as B operands of x k^T: for keys 16c .. 16c + 15, a [16 dim pairs][16 keys][2] tile
// at out + 512 c; zero beyond key n (ld keys in all).
inline void pack_transposed(BRows x, int64_t n, int64_t ld, bf16* out) {
  for (int64_t j = 0; j < ld; j += kTile) {
    __m512i m[16];
    load_pair_rows(x, j, n - j, m);
    transpose16(m);
    for (int r = 0; r < 16; ++r) _mm512_storeu_si512(out + j * kDim + r * 32, m[r]);
  }
}

// The head's rows as B operands of w x (w: weights over the keys): for keys 32c .. 32c + 31 and
// columns 16t .. 16t + 15, a [16 key pairs][16 columns][2] tile at out + 512 (2c + t); zero beyond n.
inline void pack_pairs(BRows x, int64_t n, int64_t ld, bf16* out) {
  for (int64_t j = 0; j < ld; j += 2) {
    for (int t = 0; t < kDim / kTile; ++t) {
      const vfloat a = j < n ? load(x.row(j) + t * kTile) : vfloat{};
      const vfloat b = j + 1 < n ? load(x.row(j + 1) + t * kTile) : vfloat{};
      narrow_pairs(out + (j / kKeys * 2 + t) * 512 + (j % kKeys) / 2 * 32, a, b);
    }
  }
}

// rows [r0, r0 + rows) of x (rows <= 32) transposed: out[d][i] = x[r0 + i][d], zero for i >= rows
// ([kDim][32]: the A operands of block^T, dims 0-15 and 16-31).
inline void transpose_rows(BRows x, int64_t r0, int64_t rows, bf16* out) {
  for (int half = 0; half < 2; ++half) {
    __m512i m[16];
    load_pair_rows(x, r0 + 16 * half, rows - 16 * half, m);
    transpose16(m);  // m[r]: the pairs (x[i][2r], x[i][2r + 1]) of 16 rows i
    for (int r = 0; r < 16; ++r) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + (2 * r) * kKeys + 16 * half), _mm512_cvtepi32_epi16(m[r]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + (2 * r + 1) * kKeys + 16 * half),
                          _mm512_cvtepi32_epi16(_mm512_srli_epi32(m[r], 16)));
    }
  }
}

// out[32][ld] (float32, row stride ld) = the 32 rows in A tiles 2 (rows 0-15) and 3 (16-31) times
// the B operands of pack_transposed (ld keys). Software-pipelined: each chunk of 16 keys is stored while
// the next one's products run (accumulators 0, 1 and 6, 7 in turn).
inline void rows_times_packed(const bf16* packed, int64_t ld, float* out) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_loadd(4, packed, 64);
  _tile_dpbf16ps(0, 2, 4);
  _tile_dpbf16ps(1, 3, 4);
  for (int64_t j = kTile; j < ld; j += kKeys) {
    _tile_zero(6);
    _tile_zero(7);
    _tile_loadd(5, packed + j * kDim, 64);
    _tile_dpbf16ps(6, 2, 5);
    _tile_dpbf16ps(7, 3, 5);
    _tile_stored(0, out + j - kTile, ld * 4);
    _tile_stored(1, out + kTile * ld + j - kTile, ld * 4);
    if (j + kTile < ld) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_loadd(4, packed + (j + kTile) * kDim, 64);
      _tile_dpbf16ps(0, 2, 4);
      _tile_dpbf16ps(1, 3, 4);
    }
    _tile_stored(6, out + j, ld * 4);
    _tile_stored(7, out + kTile * ld + j, ld * 4);
  }
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

// Per-thread buffers for heads of n tokens (ld = n rounded up to 32 keys).
struct TileScratch {
  int64_t ld;
  std::unique_ptr<char, AlignedFree> memory;
  float *scores, *grads, *dkt, *dvt, *block_out;  // [32][ld] x 4, [32][kDim]
  bf16 *kt, *vt, *kp, *vp, *gr;                   // 32 ld each
  bf16 *wp[2], *gp[2];                            // 32 ld each, for two blocks of queries
  bf16 *qb, *gb, *qt[2], *gt[2];                  // [32][kDim] each
  explicit TileScratch(int64_t n) : ld(round_up(n, kKeys)) {
    const int64_t f = 32 * ld, small = 32 * kDim;
    const int64_t bytes = round_up((4 * f + small) * 4 + (9 * f + 6 * small) * 2 + 64 * 24, 64);
    memory.reset(static_cast<char*>(std::aligned_alloc(64, bytes)));
    char* at = memory.get();
    auto take = [&](int64_t count, auto* type) {
      auto* p = reinterpret_cast<decltype(type)>(at);
      at += round_up(count * sizeof(*type), 64);
      return p;
    };
    for (float** p : {&scores, &grads, &dkt, &dvt}) *p = take(f, static_cast<float*>(nullptr));
    block_out = take(small, static_cast<float*>(nullptr));
    for (bf16** p : {&kt, &vt, &kp, &vp, &gr, &wp[0], &wp[1], &gp[0], &gp[1]})
      *p = take(f, static_cast<bf16*>(nullptr));
    for (bf16** p : {&qb, &gb, &qt[0], &qt[1], &gt[0], &gt[1]}) *p = take(small, static_cast<bf16*>(nullptr));
  }
};

// Rows [r0, r0 + count) of the next head's arrays into cache (see next_head).
inline void prefetch_next(const BRows* next, int64_t r0, int64_t count, int64_t n) {
  if (!next) return;
  prefetch_rows({next[0], next[1]}, r0, count, n);
  if (next[2].base) prefetch_rows({next[2]}, r0, count, n);
}

// One head: o = softmax(scale q k^T) v (bfloat16), lse = each row's log-sum-exp of scale q k^T, 16
// queries at a time.
void forward_head_tiles(BRows q, BRows k, BRows v, int64_t n, float scale, MutableBRows o, float* lse, TileScratch& s,
                        const BRows* next) {
  const int64_t ld = s.ld;
  const vfloat c = splat(scale * kLog2e);
  pack_transposed(k, n, ld, s.kt);
  pack_pairs(v, n, ld, s.vp);
  bf16* weights = s.gr;  // [16][ld]
  for (int64_t r0 = 0; r0 < n; r0 += kTile) {
    const int64_t rows = std::min<int64_t>(kTile, n - r0);
    prefetch_rows({q}, r0 + kTile, kTile, n);
    prefetch_next(next, r0, kTile, n);
    if (rows == kTile) {
      _tile_loadd(2, q.row(r0), q.bytes());
    } else {
      copy_block(q, r0, rows, kTile, s.qb);
      _tile_loadd(2, s.qb, 64);
    }
    for (int64_t j = 0; j < ld; j += kKeys) {  // scores q k^T, [16][ld]
      _tile_zero(0);
      _tile_zero(1);
      _tile_loadd(3, s.kt + j * kDim, 64);
      _tile_loadd(4, s.kt + (j + kTile) * kDim, 64);
      _tile_dpbf16ps(0, 2, 3);
      _tile_dpbf16ps(1, 2, 4);
      _tile_stored(0, s.scores + j, ld * 4);
      _tile_stored(1, s.scores + j + kTile, ld * 4);
    }
    vfloat maxima = splat(0.f), totals = splat(1.f);
    for (int i = 0; i < kTile; ++i) {  // base-2 softmax numerators, rounded to bfloat16
      const float* row = s.scores + i * ld;
      vfloat m = splat(-INFINITY);
      over_keys(n, ld, [&](int64_t j, auto valid) {
        const vfloat x = load(row + j) * c;
        const vfloat kept = zero_outside(valid, splat(1.f)) > splat(0.f) ? x : m;  // padding keys ignored
        m = kept > m ? kept : m;
      });
      const vfloat mv = splat(hmax(m));
      vfloat sum = vfloat{};
      over_keys(n, ld, [&](int64_t j, auto valid) {
        const vfloat e = zero_outside(valid, vexp2_coarse(load(row + j) * c - mv));
        store(weights + i * ld + j, e);
        sum += e;
      });
      maxima[i] = mv[0];
      totals[i] = hsum(sum);
    }
    const vfloat row_lse = maxima * splat(kLn2) + vlog(totals), inverse_sums = splat(1.f) / totals;
    _tile_zero(0);
    _tile_zero(1);
    for (int64_t j = 0; j < ld; j += kKeys) {  // weights v, [16][kDim]
      _tile_loadd(5, weights + j, ld * 2);
      _tile_loadd(3, s.vp + j * kDim, 64);
      _tile_loadd(4, s.vp + j * kDim + 512, 64);
      _tile_dpbf16ps(0, 5, 3);
      _tile_dpbf16ps(1, 5, 4);
    }
    _tile_stored(0, s.block_out, kDim * 4);
    _tile_stored(1, s.block_out + kTile, kDim * 4);
    for (int64_t i = 0; i < rows; ++i) {
      lse[r0 + i] = row_lse[i];
      const vfloat inverse = splat(inverse_sums[i]);
      for (int d = 0; d < kDim; d += kLanes) store(o.row(r0 + i) + d, load(s.block_out + i * kDim + d) * inverse);
    }
  }
}

// rows [0, n) of a transposed float32 accumulator acc[kDim][ld] as bfloat16 rows of `to`.
inline void write_transposed(const float* acc, int64_t ld, int64_t n, MutableBRows to) {
  for (int64_t j = 0; j < n; j += kTile) {
    __m512i lo[16], hi[16];  // dims 0-15 and 16-31 of keys j .. j + 15
    for (int d = 0; d < 16; ++d) {
      lo[d] = _mm512_loadu_si512(acc + d * ld + j);
      hi[d] = _mm512_loadu_si512(acc + (d + 16) * ld + j);
    }
    transpose16(lo);
    transpose16(hi);
    for (int64_t m = 0; m < std::min<int64_t>(kTile, n - j); ++m) {
      store(to.row(j + m), vfloat(_mm512_castsi512_ps(lo[m])));
      store(to.row(j + m) + 16, vfloat(_mm512_castsi512_ps(hi[m])));
    }
  }
}

// dv^T += d_o^T w and dk^T += q^T g (float32 [kDim][ld], tiles of 16 dims x 16 keys) for `blocks` (1
// or 2) blocks of 32 queries: two blocks per load and store of each accumulator tile.
inline void accumulate_dk_dv(const TileScratch& s, int blocks) {
  const int64_t ld = s.ld;
  for (int part = 0; part < 2; ++part) {  // dv from d_o^T and w, then dk from q^T and g
    bf16* const* a = part == 0 ? s.gt : s.qt;
    bf16* const* b = part == 0 ? s.wp : s.gp;
    float* acc = part == 0 ? s.dvt : s.dkt;
    _tile_loadd(2, a[0], 64);  // dims 0-15 and 16-31 of the first block
    _tile_loadd(3, a[0] + kTile * kKeys, 64);
    if (blocks == 2) {
      _tile_loadd(4, a[1], 64);
      _tile_loadd(5, a[1] + kTile * kKeys, 64);
    }
    for (int64_t j = 0; j < ld; j += kTile) {
      _tile_loadd(0, acc + j, ld * 4);
      _tile_loadd(1, acc + kTile * ld + j, ld * 4);
      _tile_loadd(6, b[0] + 2 * j, ld * 4);
      _tile_dpbf16ps(0, 2, 6);
      _tile_dpbf16ps(1, 3, 6);
      if (blocks == 2) {
        _tile_loadd(7, b[1] + 2 * j, ld * 4);
        _tile_dpbf16ps(0, 4, 7);
        _tile_dpbf16ps(1, 5, 7);
      }
      _tile_stored(0, acc + j, ld * 4);
      _tile_stored(1, acc + kTile * ld + j, ld * 4);
    }
  }
}

// One head's gradients (dq, dk, dv) given d_o, o and lse, 32 queries at a time: the weights w and the
// scores' gradient g = scale w (d_o v^T - rowsum(d_o o)) per block; dv^T += d_o^T w and dk^T += q^T g in
// float32 accumulators [kDim][ld] (tiles of 16 dims x 16 keys), dq = g k.
void backward_head_tiles(BRows q, BRows k, BRows v, BRows o, BRows d_o, const float* lse, int64_t n, float scale,
                   MutableBRows dq, MutableBRows dk, MutableBRows dv, TileScratch& s, const BRows* next) {
  const int64_t ld = s.ld;
  const vfloat c = splat(scale * kLog2e), sv = splat(scale);
  pack_transposed(k, n, ld, s.kt);  // scores
  pack_transposed(v, n, ld, s.vt);  // d_o v^T
  pack_pairs(k, n, ld, s.kp);       // g k
  std::fill(s.dkt, s.dkt + kDim * ld, 0.f);
  std::fill(s.dvt, s.dvt + kDim * ld, 0.f);
  for (int64_t r0 = 0; r0 < n; r0 += kKeys) {
    const int64_t rows = std::min<int64_t>(kKeys, n - r0);
    const int set = (r0 / kKeys) % 2;  // which of the two blocks' buffers
    prefetch_rows({q, o, d_o}, r0 + kKeys, kKeys, n);
    prefetch_next(next, r0, kKeys, n);
    copy_block(q, r0, rows, kKeys, s.qb);
    copy_block(d_o, r0, rows, kKeys, s.gb);
    transpose_rows(q, r0, rows, s.qt[set]);
    transpose_rows(d_o, r0, rows, s.gt[set]);
    float shift[kKeys], term[kKeys];
    for (int64_t i = 0; i < rows; ++i) {
      shift[i] = lse[r0 + i] * kLog2e;
      vfloat t = vfloat{};
      for (int d = 0; d < kDim; d += kLanes) t += load(d_o.row(r0 + i) + d) * load(o.row(r0 + i) + d);
      term[i] = hsum(t);
    }
    _tile_loadd(2, s.qb, 64);
    _tile_loadd(3, s.qb + kTile * kDim, 64);
    rows_times_packed(s.kt, ld, s.scores);
    _tile_loadd(2, s.gb, 64);
    _tile_loadd(3, s.gb + kTile * kDim, 64);
    rows_times_packed(s.vt, ld, s.grads);
    for (int64_t i = 0; i < kKeys; i += 2) {  // rows i, i + 1: one row of pairs
      bf16* wp = s.wp[set] + i * ld;
      bf16* gp = s.gp[set] + i * ld;
      bf16* g0 = s.gr + i * ld;
      bf16* g1 = g0 + ld;
      if (i >= rows) {  // padding rows: no weight, no gradient
        std::fill(wp, wp + 2 * ld, bf16(0));
        std::fill(gp, gp + 2 * ld, bf16(0));
        std::fill(g0, g0 + 2 * ld, bf16(0));
        continue;
      }
      const bool pair = i + 1 < rows;
      const float* s0 = s.scores + i * ld;
      const float* d0 = s.grads + i * ld;
      const vfloat h0 = splat(shift[i]), h1 = splat(pair ? shift[i + 1] : 1e30f);  // a padding row: 2^-huge = 0
      const vfloat t0 = splat(term[i] * scale), t1 = splat(pair ? term[i + 1] * scale : 0.f);
      over_keys(n, ld, [&](int64_t j, auto valid) {
        const vfloat w0 = zero_outside(valid, vexp2_coarse(load(s0 + j) * c - h0));
        const vfloat w1 = zero_outside(valid, vexp2_coarse(load(s0 + ld + j) * c - h1));
        const vfloat x0 = w0 * (load(d0 + j) * sv - t0), x1 = w1 * (load(d0 + ld + j) * sv - t1);
        narrow_pairs(wp + 2 * j, w0, w1);
        narrow_pairs(gp + 2 * j, x0, x1);
        store(g0 + j, x0);
        store(g1 + j, x1);
      });
    }
    if (set == 1 || r0 + kKeys >= n) accumulate_dk_dv(s, set + 1);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(6);
    _tile_zero(7);
    for (int64_t j = 0; j < ld; j += kKeys) {  // dq = g k
      _tile_loadd(2, s.gr + j, ld * 2);
      _tile_loadd(3, s.gr + kTile * ld + j, ld * 2);
      _tile_loadd(4, s.kp + j * kDim, 64);
      _tile_loadd(5, s.kp + j * kDim + 512, 64);
      _tile_dpbf16ps(0, 2, 4);
      _tile_dpbf16ps(1, 2, 5);
      _tile_dpbf16ps(6, 3, 4);
      _tile_dpbf16ps(7, 3, 5);
    }
    _tile_stored(0, s.block_out, kDim * 4);
    _tile_stored(1, s.block_out + kTile, kDim * 4);
    _tile_stored(6, s.block_out + kTile * kDim, kDim * 4);
    _tile_stored(7, s.block_out + kTile * kDim + kTile, kDim * 4);
    for (int64_t i = 0; i < rows; ++i)
      for (int d = 0; d < kDim; d += kLanes) store(dq.row(r0 + i) + d, load(s.block_out + i * kDim + d));
  }
  write_transposed(s.dkt, ld, n, dk);
  write_transposed(s.dvt, ld, n, dv);
}

}  // namespace

bool amx_ready() {
  static const bool granted = request_tile_data();
  return granted;
}

bool amx_head_dim(int64_t d) { return d == kDim; }

namespace {

// fn(h, in, scratch, next) for the heads h in [begin, end) with this thread's tiles configured: in, head
// h's rows in qkv (with the bias added, in a dense block, when there is one), next head h + 1's k and v
// rows when that head is in the range.
template <class Fn>
void each_head(const Geometry& g, const bf16* qkv, const float* bias, int64_t begin, int64_t end, Fn fn) {
  TileScratch scratch(g.tokens);
  std::vector<bf16> biased(bias ? g.tokens * 3 * kDim : 0);
  Tiles tiles;
  BRows next[3];
  for (int64_t h = begin; h < end; ++h) {
    const HeadInput<bf16> in = bias ? add_head_bias(g, qkv, bias, h, biased.data()) : head_input(g, qkv, h);
    fn(h, in, scratch, next_head(g, qkv, bias != nullptr, h, end, next));
  }
}

}  // namespace

void forward_heads(const Geometry& g, const uint16_t* qkv, const float* bias, int64_t begin, int64_t end,
                   uint16_t* out, float* lse) {
  each_head(g, qkv, bias, begin, end,
            [&](int64_t h, const HeadInput<bf16>& in, TileScratch& s, const BRows* next) {
              const HeadAt at(g, h);
              forward_head_tiles({in.q, in.stride}, {in.q + in.part, in.stride}, {in.q + 2 * in.part, in.stride},
                                 g.tokens, g.scale, {out + at.plain, at.plain_stride}, lse + h * g.tokens, s, next);
            });
}

void backward_heads(const Geometry& g, const uint16_t* qkv, const float* bias, const uint16_t* out,
                    const float* lse, const uint16_t* d_out, int64_t begin, int64_t end, uint16_t* d_qkv,
                    float* d_bias_heads) {
  each_head(g, qkv, bias, begin, end,
            [&](int64_t h, const HeadInput<bf16>& in, TileScratch& s, const BRows* next) {
              const HeadAt at(g, h);
              const int64_t ps = at.packed_stride;
              bf16* dq = d_qkv + at.packed;
              backward_head_tiles({in.q, in.stride}, {in.q + in.part, in.stride}, {in.q + 2 * in.part, in.stride},
                                  {out + at.plain, at.plain_stride}, {d_out + at.plain, at.plain_stride},
                                  lse + h * g.tokens, g.tokens, g.scale, {dq, ps}, {dq + at.part, ps},
                                  {dq + 2 * at.part, ps}, s, next);
              if (d_bias_heads) sum_head_rows(g, d_qkv, h, d_bias_heads + h * 3 * kDim);
            });
}

#endif  // HACM_AMX

}  // namespace hacm_attention
