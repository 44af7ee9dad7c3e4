// Entry points of the Poincare-ball map kernels (poincare_kernels.cc, compiled for the host's instruction
// set). x, y, dy, dx: [rows, d] float32 row-major; factors: [rows, 2] float32, each row's (scale, slope)
// with y = scale x and dy/dx = scale I + slope x x^T.
#pragma once

#include <cstdint>

namespace hacm_poincare {

// Rows [begin, end): y = project(expmap0(clip(x))) for curvature c and clip radius r (0: no clipping),
// the element-wise steps in the order of hacm_tf.ops.hyperbolic.expmap_project, and the rows' factors.
void expmap_project_rows(const float* x, int64_t d, int64_t begin, int64_t end, float c, float r, float* y,
                         float* factors);

// Rows [begin, end): dx = scale dy + slope (x . dy) x.
void radial_gradient_rows(const float* x, const float* factors, const float* dy, int64_t d, int64_t begin,
                          int64_t end, float* dx);

}  // namespace hacm_poincare
