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

void copy_box_args_check(const CopyBoxArgs *a) {
    YP_CHECK(a->n >= 0 && a->count_c >= 0 && a->count_s >= 0);
    YP_CHECK(a->src_c0 >= 0 && a->src_c0 + a->count_c <= a->src_c);
    YP_CHECK(a->dst_c0 >= 0 && a->dst_c0 + a->count_c <= a->dst_c);
    YP_CHECK(a->src_s0 >= 0 && a->src_s0 + a->count_s <= a->src_s);
    YP_CHECK(a->dst_s0 >= 0 && a->dst_s0 + a->count_s <= a->dst_s);
}

void backend_copy_channels(Backend *be, const CopyChannelsArgs *a) {
    be->ops->copy_box(be, &(CopyBoxArgs){.n = a->n, .src = a->src, .src_c = a->src_c, .src_c0 = a->src_c0,
                                         .src_s = a->hw, .dst = a->dst, .dst_c = a->dst_c, .dst_c0 = a->dst_c0,
                                         .dst_s = a->hw, .count_c = a->count, .count_s = a->hw,
                                         .accumulate = a->accumulate});
}
