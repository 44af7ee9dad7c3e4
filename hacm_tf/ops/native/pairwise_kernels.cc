// Pairwise Euclidean distances within small sets of points (the spatial criterion's joints of a patch):
// each pair's coordinates are subtracted and squared in registers, so the [v, v, d] differences a
// broadcast formula writes to memory never exist. The distance is symmetric to the bit ((a - b)^2 =
// (b - a)^2), so each pair is computed once.
#include <cmath>

#include "attention_kernels.h"  // vfloat, kLanes, load, splat, hsum
#include "pairwise.h"

namespace hacm_pairwise {

using hacm_attention::hsum;
using hacm_attention::kLanes;
using hacm_attention::load;
using hacm_attention::vfloat;

void distances(const float* x, int64_t v, int64_t d, int64_t begin, int64_t end, float* out) {
  const int64_t full = d / kLanes * kLanes;
  for (int64_t s = begin; s < end; ++s) {
    const float* points = x + s * v * d;
    float* dist = out + s * v * v;
    for (int64_t i = 0; i < v; ++i) {
      dist[i * v + i] = 0.f;
      const float* a = points + i * d;
      for (int64_t j = i + 1; j < v; ++j) {
        const float* b = points + j * d;
        vfloat acc = vfloat{};
        for (int64_t k = 0; k < full; k += kLanes) {
          const vfloat diff = load(a + k) - load(b + k);
          acc += diff * diff;
        }
        float sum = hsum(acc);
        for (int64_t k = full; k < d; ++k) sum += (a[k] - b[k]) * (a[k] - b[k]);
        dist[i * v + j] = dist[j * v + i] = std::sqrt(sum);
      }
    }
  }
}

}  // namespace hacm_pairwise
