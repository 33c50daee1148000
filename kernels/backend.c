#include "kernels/backend.h"

ConvDesc conv_desc_make(int64_t n, int64_t c_in, int64_t h_in, int64_t w_in, int64_t c_out, int64_t k,
                        int64_t stride, int64_t pad, int64_t dilation, int64_t groups) {
    ConvDesc d = {.n = n, .c_in = c_in, .h_in = h_in, .w_in = w_in, .c_out = c_out, .kh = k, .kw = k,
                  .stride = stride, .pad = pad, .dilation = dilation, .groups = groups};
    d.h_out = (h_in + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
    d.w_out = (w_in + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
    return d;
}

int64_t conv_desc_macs(const ConvDesc *d) {
    return d->n * d->c_out * d->h_out * d->w_out * (d->c_in / d->groups) * d->kh * d->kw;
}

void backend_destroy(Backend *be) {
    if (be) be->ops->destroy(be);
}

void backend_copy_channels(Backend *be, int64_t n, int64_t hw, const void *src, int64_t src_c, int64_t src_c0,
                           void *dst, int64_t dst_c, int64_t dst_c0, int64_t count, bool accumulate) {
    be->ops->copy_box(be, n, src, src_c, src_c0, hw, 0, dst, dst_c, dst_c0, hw, 0, count, hw, accumulate);
}
