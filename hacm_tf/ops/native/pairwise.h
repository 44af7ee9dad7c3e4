// Entry point of the pairwise-distance kernel (pairwise_kernels.cc, compiled for the host's instruction
// set). x: sets of v points of d coordinates, [sets, v, d] row-major; out: [sets, v, v].
#pragma once

#include <cstdint>

namespace hacm_pairwise {

// Sets [begin, end): out[s][i][j] = |x[s][i] - x[s][j]| (Euclidean, from the differences themselves).
void distances(const float* x, int64_t v, int64_t d, int64_t begin, int64_t end, float* out);

}  // namespace hacm_pairwise
