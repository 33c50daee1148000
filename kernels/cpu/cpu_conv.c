// Convolution as GEMM, one image at a time. im2col unrolls the image into a matrix col
// (C_in * KH * KW, H_out * W_out) in the backend's workspace; then for each group g
//   forward          Y_g  = W_g · col_g                 W_g (C_out/G, C_in/G * KH * KW)
//   backward data    col_g = W_g^T · dY_g, then col2im adds col onto dX
//   backward filter  dW_g += dY_g · col_g^T
// A 1x1 convolution with stride 1 and no padding has col == X, so it skips im2col and the workspace.
#include <string.h>

#include "framework/core/error.h"
#include "kernels/cpu/cpu_kernels.h"

// Dilation is irrelevant with a 1x1 kernel: there is only one tap.
static bool cpu_conv_is_pointwise(const ConvDesc *d) {
    return d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
}

static int64_t cpu_conv_out_size(int64_t in, int64_t k, const ConvDesc *d) {
    return (in + 2 * d->pad - d->dilation * (k - 1) - 1) / d->stride + 1;
}

static void cpu_conv_check(const ConvDesc *d) {
    YP_CHECK(d->n >= 0 && d->c_in > 0 && d->c_out > 0 && d->groups > 0);
    YP_CHECK(d->c_in % d->groups == 0 && d->c_out % d->groups == 0);
    YP_CHECK(d->kh > 0 && d->kw > 0 && d->stride > 0 && d->pad >= 0 && d->dilation > 0);
    YP_CHECK(d->h_out > 0 && d->h_out == cpu_conv_out_size(d->h_in, d->kh, d));
    YP_CHECK(d->w_out > 0 && d->w_out == cpu_conv_out_size(d->w_in, d->kw, d));
}

// Rows of col: C_in * KH * KW; its columns are the H_out * W_out output positions.
static int64_t cpu_conv_col_rows(const ConvDesc *d) { return d->c_in * d->kh * d->kw; }

size_t cpu_conv_workspace_bytes(Backend *be, const ConvDesc *d) {
    (void)be;
    cpu_conv_check(d);
    if (cpu_conv_is_pointwise(d)) return 0;
    return (size_t)(cpu_conv_col_rows(d) * d->h_out * d->w_out) * sizeof(float);
}

// The output indices o in [0, n_out) whose input index o * stride + offset lies in [0, size), as
// [*lo, *hi); empty when *lo == *hi.
static void cpu_conv_valid_range(int64_t offset, int64_t stride, int64_t size, int64_t n_out,
                                 int64_t *lo, int64_t *hi) {
    int64_t first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    int64_t end = size - offset <= 0 ? 0 : (size - offset + stride - 1) / stride;
    *lo = first < n_out ? first : n_out;
    *hi = end < *lo ? *lo : end < n_out ? end : n_out;
}

// Fills col (C_in * KH * KW, H_out * W_out) from one image x (C_in, H_in, W_in): row (c, i, j) holds
// the pixel under kernel tap (i, j) at every output position, zero where the tap is in the padding.
static void cpu_im2col(const ConvDesc *d, const float *x, float *col) {
    const int64_t n_rows = cpu_conv_col_rows(d), hw_out = d->h_out * d->w_out;
    const int64_t s = d->stride;
#pragma omp parallel for if (n_rows * hw_out >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t r = 0; r < n_rows; r++) {
        const int64_t c = r / (d->kh * d->kw), i = r / d->kw % d->kh, j = r % d->kw;
        const int64_t off_h = i * d->dilation - d->pad, off_w = j * d->dilation - d->pad;
        const float *xc = x + c * d->h_in * d->w_in;
        float *row = col + r * hw_out;
        int64_t oh_lo, oh_hi, ow_lo, ow_hi;
        cpu_conv_valid_range(off_h, s, d->h_in, d->h_out, &oh_lo, &oh_hi);
        cpu_conv_valid_range(off_w, s, d->w_in, d->w_out, &ow_lo, &ow_hi);
        memset(row, 0, (size_t)(oh_lo * d->w_out) * sizeof(float));
        for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
            const float *xr = xc + (oh * s + off_h) * d->w_in + off_w;  // xr[ow * s] is the tap
            float *dst = row + oh * d->w_out;
            for (int64_t ow = 0; ow < ow_lo; ow++) dst[ow] = 0.0f;
            if (s == 1) {
                memcpy(dst + ow_lo, xr + ow_lo, (size_t)(ow_hi - ow_lo) * sizeof(float));
            } else {
                for (int64_t ow = ow_lo; ow < ow_hi; ow++) dst[ow] = xr[ow * s];
            }
            for (int64_t ow = ow_hi; ow < d->w_out; ow++) dst[ow] = 0.0f;
        }
        memset(row + oh_hi * d->w_out, 0, (size_t)((d->h_out - oh_hi) * d->w_out) * sizeof(float));
    }
}

// dx (C_in, H_in, W_in) += the adjoint of cpu_im2col applied to col. Threads split the channels, so
// no two of them write the same pixel.
static void cpu_col2im_add(const ConvDesc *d, const float *col, float *dx) {
    const int64_t hw_out = d->h_out * d->w_out, s = d->stride;
#pragma omp parallel for if (cpu_conv_col_rows(d) * hw_out >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t c = 0; c < d->c_in; c++) {
        float *dxc = dx + c * d->h_in * d->w_in;
        for (int64_t i = 0; i < d->kh; i++) {
            for (int64_t j = 0; j < d->kw; j++) {
                const int64_t off_h = i * d->dilation - d->pad, off_w = j * d->dilation - d->pad;
                const float *row = col + ((c * d->kh + i) * d->kw + j) * hw_out;
                int64_t oh_lo, oh_hi, ow_lo, ow_hi;
                cpu_conv_valid_range(off_h, s, d->h_in, d->h_out, &oh_lo, &oh_hi);
                cpu_conv_valid_range(off_w, s, d->w_in, d->w_out, &ow_lo, &ow_hi);
                for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                    float *dr = dxc + (oh * s + off_h) * d->w_in + off_w;
                    const float *src = row + oh * d->w_out;
                    for (int64_t ow = ow_lo; ow < ow_hi; ow++) dr[ow * s] += src[ow];
                }
            }
        }
    }
}

void cpu_conv2d_forward(Backend *be, const ConvDesc *d, const void *x_mem, const float *w,
                        const float *bias, void *y_mem) {
    const float *x = x_mem;
    float *y = y_mem;
    const bool pointwise = cpu_conv_is_pointwise(d);
    float *col = pointwise ? NULL : cpu_workspace_get(be, cpu_conv_workspace_bytes(be, d));
    const int64_t hw_in = d->h_in * d->w_in, hw_out = d->h_out * d->w_out;
    const int64_t m_g = d->c_out / d->groups, k_g = cpu_conv_col_rows(d) / d->groups;
    for (int64_t img = 0; img < d->n; img++) {
        const float *xn = x + img * d->c_in * hw_in;
        float *yn = y + img * d->c_out * hw_out;
        // With a bias, the GEMM adds onto rows preset to it.
        float beta = 0.0f;
        if (bias) {
            beta = 1.0f;
#pragma omp parallel for if (d->c_out * hw_out >= CPU_PARALLEL_MIN_ELEMS)
            for (int64_t co = 0; co < d->c_out; co++) {
                for (int64_t p = 0; p < hw_out; p++) yn[co * hw_out + p] = bias[co];
            }
        }
        const float *src = xn;  // (C_in * KH * KW, H_out * W_out)
        if (!pointwise) {
            cpu_im2col(d, xn, col);
            src = col;
        }
        for (int64_t g = 0; g < d->groups; g++) {
            cpu_sgemm(false, false, m_g, hw_out, k_g, 1.0f, w + g * m_g * k_g, k_g,
                      src + g * k_g * hw_out, hw_out, beta, yn + g * m_g * hw_out, hw_out);
        }
    }
}

void cpu_conv2d_backward_data(Backend *be, const ConvDesc *d, const void *dy_mem, const float *w,
                              void *dx_mem) {
    const float *dy = dy_mem;
    float *dx = dx_mem;
    const bool pointwise = cpu_conv_is_pointwise(d);
    float *col = pointwise ? NULL : cpu_workspace_get(be, cpu_conv_workspace_bytes(be, d));
    const int64_t hw_in = d->h_in * d->w_in, hw_out = d->h_out * d->w_out;
    const int64_t m_g = d->c_out / d->groups, k_g = cpu_conv_col_rows(d) / d->groups;
    for (int64_t img = 0; img < d->n; img++) {
        const float *dyn = dy + img * d->c_out * hw_out;
        float *dxn = dx + img * d->c_in * hw_in;
        // Pointwise: col is dX itself, so the GEMM accumulates straight into it (beta = 1).
        float *dst = pointwise ? dxn : col;
        const float beta = pointwise ? 1.0f : 0.0f;
        for (int64_t g = 0; g < d->groups; g++) {
            cpu_sgemm(true, false, k_g, hw_out, m_g, 1.0f, w + g * m_g * k_g, k_g,
                      dyn + g * m_g * hw_out, hw_out, beta, dst + g * k_g * hw_out, hw_out);
        }
        if (!pointwise) cpu_col2im_add(d, col, dxn);
    }
}

void cpu_conv2d_backward_filter(Backend *be, const ConvDesc *d, const void *x_mem, const void *dy_mem,
                                float *dw, float *dbias) {
    const float *x = x_mem;
    const float *dy = dy_mem;
    const bool pointwise = cpu_conv_is_pointwise(d);
    float *col = pointwise ? NULL : cpu_workspace_get(be, cpu_conv_workspace_bytes(be, d));
    const int64_t hw_in = d->h_in * d->w_in, hw_out = d->h_out * d->w_out;
    const int64_t m_g = d->c_out / d->groups, k_g = cpu_conv_col_rows(d) / d->groups;
    for (int64_t img = 0; img < d->n; img++) {
        const float *xn = x + img * d->c_in * hw_in;
        const float *dyn = dy + img * d->c_out * hw_out;
        const float *src = xn;  // (C_in * KH * KW, H_out * W_out)
        if (!pointwise) {
            cpu_im2col(d, xn, col);
            src = col;
        }
        for (int64_t g = 0; g < d->groups; g++) {
            cpu_sgemm(false, true, m_g, k_g, hw_out, 1.0f, dyn + g * m_g * hw_out, hw_out,
                      src + g * k_g * hw_out, hw_out, 1.0f, dw + g * m_g * k_g, k_g);
        }
    }
    if (!dbias) return;
#pragma omp parallel for if (d->n * d->c_out * hw_out >= CPU_PARALLEL_MIN_ELEMS)
    for (int64_t co = 0; co < d->c_out; co++) {
        double sum = 0.0;
        for (int64_t img = 0; img < d->n; img++) {
            const float *p = dy + (img * d->c_out + co) * hw_out;
            for (int64_t i = 0; i < hw_out; i++) sum += p[i];
        }
        dbias[co] += (float)sum;
    }
}
