
#include <cmath>
#include <cstddef>
#include <algorithm>
using std::min;
struct dim3_ { int x, y, z; };
static dim3_ blockIdx, threadIdx, blockDim;
#define __global__
#define __restrict__

#ifndef __CUDACC__
#define __device__
#endif

// cv2.INTER_LINEAR at one destination pixel: half-pixel centres; outside [0, size-1] the weight
// of the far pixel is 0. Writes the three channels (BGR order) to v.
__device__ void sample_linear(const unsigned char* src, const int src_h, const int src_w,
                              const int x, const int y, const float scale_y, const float scale_x,
                              float* v)
{
    float fy = (y + 0.5f) * scale_y - 0.5f;
    int y0 = (int)floorf(fy);
    fy -= (float)y0;
    if (y0 < 0) { y0 = 0; fy = 0.f; }
    if (y0 >= src_h - 1) { y0 = src_h - 1; fy = 0.f; }
    const int y1 = min(y0 + 1, src_h - 1);

    float fx = (x + 0.5f) * scale_x - 0.5f;
    int x0 = (int)floorf(fx);
    fx -= (float)x0;
    if (x0 < 0) { x0 = 0; fx = 0.f; }
    if (x0 >= src_w - 1) { x0 = src_w - 1; fx = 0.f; }
    const int x1 = min(x0 + 1, src_w - 1);

    const unsigned char* row0 = src + (size_t)y0 * src_w * 3;
    const unsigned char* row1 = src + (size_t)y1 * src_w * 3;
    for (int c = 0; c < 3; ++c) {
        const float top = (1.f - fx) * row0[x0 * 3 + c] + fx * row0[x1 * 3 + c];
        const float bottom = (1.f - fx) * row1[x0 * 3 + c] + fx * row1[x1 * 3 + c];
        v[c] = (1.f - fy) * top + fy * bottom;
    }
}

// cv2.INTER_AREA's source span of destination index d along one axis (computeResizeAreaTab):
// the cell [d * src / dst, (d + 1) * src / dst) clipped to the image; a source pixel's weight
// is its overlap with the cell over the cell's width; overlaps under 1e-3 are skipped as cv2 does.
__device__ void area_span(const int d, const int n_src, const int n_dst,
                          float* f1, float* f2, float* cell, int* s1, int* s2)
{
    const float scale = (float)n_src / (float)n_dst;
    *f1 = (float)d * (float)n_src / (float)n_dst;
    *f2 = *f1 + scale;
    *cell = fminf(scale, (float)n_src - *f1);
    *s2 = min((int)floorf(*f2), n_src - 1);
    *s1 = min((int)ceilf(*f1), *s2);
}

__device__ float area_weight(const int s, const float f1, const float f2, const float cell,
                             const int s1, const int s2)
{
    if (s < s1) return (s1 - f1 > 1e-3f) ? ((float)s1 - f1) / cell : 0.f;
    if (s < s2) return 1.f / cell;
    return (f2 - (float)s2 > 1e-3f) ? fminf(fminf(f2 - (float)s2, 1.f), cell) / cell : 0.f;
}

// BGR -> RGB, / 255, HWC -> CHW: channel c of the frame goes to plane 2 - c.
__device__ void store_rgb(float* dst, const int dst_h, const int dst_w, const int x, const int y,
                          const float* v)
{
    const size_t plane = (size_t)dst_h * dst_w;
    const size_t at = (size_t)y * dst_w + x;
    for (int c = 0; c < 3; ++c) dst[(2 - c) * plane + at] = v[c] * (1.f / 255.f);
}

extern "C" __global__ void bgr_to_rgb_nchw_resize(
    const unsigned char* __restrict__ src, const int src_h, const int src_w,
    float* __restrict__ dst, const int dst_h, const int dst_w,
    const float scale_y, const float scale_x)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    float v[3];
    sample_linear(src, src_h, src_w, x, y, scale_y, scale_x, v);
    store_rgb(dst, dst_h, dst_w, x, y, v);
}

// Shrinking in both axes (src >= dst): cv2.INTER_AREA; anything else: cv2.INTER_LINEAR.
extern "C" __global__ void bgr_to_rgb_nchw_resize_area(
    const unsigned char* __restrict__ src, const int src_h, const int src_w,
    float* __restrict__ dst, const int dst_h, const int dst_w,
    const float scale_y, const float scale_x)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    float v[3] = {0.f, 0.f, 0.f};
    if (src_h < dst_h || src_w < dst_w) {
        sample_linear(src, src_h, src_w, x, y, scale_y, scale_x, v);
        store_rgb(dst, dst_h, dst_w, x, y, v);
        return;
    }
    float fy1, fy2, cell_y, fx1, fx2, cell_x;
    int sy1, sy2, sx1, sx2;
    area_span(y, src_h, dst_h, &fy1, &fy2, &cell_y, &sy1, &sy2);
    area_span(x, src_w, dst_w, &fx1, &fx2, &cell_x, &sx1, &sx2);
    for (int sy = sy1 - 1; sy <= sy2; ++sy) {
        if (sy < 0) continue;
        const float wy = area_weight(sy, fy1, fy2, cell_y, sy1, sy2);
        if (wy == 0.f) continue;
        const unsigned char* row = src + (size_t)sy * src_w * 3;
        for (int sx = sx1 - 1; sx <= sx2; ++sx) {
            if (sx < 0) continue;
            const float w = wy * area_weight(sx, fx1, fx2, cell_x, sx1, sx2);
            v[0] += w * row[sx * 3];
            v[1] += w * row[sx * 3 + 1];
            v[2] += w * row[sx * 3 + 2];
        }
    }
    // cv2 rounds the average to uint8 (half to even); so does this, so a flat area stays exact.
    for (int c = 0; c < 3; ++c) v[c] = rintf(v[c]);
    store_rgb(dst, dst_h, dst_w, x, y, v);
}

extern "C" void run(int area, const unsigned char* src, int sh, int sw, float* dst, int dh, int dw, float sy, float sx) {
  blockDim = {1, 1, 1};
  for (int y = 0; y < dh; ++y) for (int x = 0; x < dw; ++x) {
    blockIdx = {x, y, 0}; threadIdx = {0, 0, 0};
    if (area) bgr_to_rgb_nchw_resize_area(src, sh, sw, dst, dh, dw, sy, sx);
    else bgr_to_rgb_nchw_resize(src, sh, sw, dst, dh, dw, sy, sx);
  }
}
