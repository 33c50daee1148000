#include "kernels/backend.h"

ConvDesc conv_desc_make(const ConvDesc *shape) {
    ConvDesc d = *shape;
    YP_CHECK(d.kh >= 1 && d.kw >= 1 && d.stride >= 1 && d.dilation >= 1 && d.groups >= 1);
    d.h_out = (d.h_in + 2 * d.pad - d.dilation * (d.kh - 1) - 1) / d.stride + 1;
    d.w_out = (d.w_in + 2 * d.pad - d.dilation * (d.kw - 1) - 1) / d.stride + 1;
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
