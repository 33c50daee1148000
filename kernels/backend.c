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

// The shape rules of Pool2dArgs that pool2d_args_out relies on: PyTorch refuses pad > k / 2 and
// windows larger than the padded input.
static void pool2d_args_check_shape(const Pool2dArgs *a) {
    YP_CHECK(a->n >= 0 && a->c >= 0 && a->h >= 1 && a->w >= 1);
    YP_CHECK(a->k >= 1 && a->stride >= 1 && a->pad >= 0 && a->pad <= a->k / 2);
    YP_CHECK(a->h + 2 * a->pad >= a->k && a->w + 2 * a->pad >= a->k);
}

Pool2dArgs pool2d_args_out(const Pool2dArgs *a) {
    pool2d_args_check_shape(a);
    Pool2dArgs out = *a;
    out.h_out = (a->h + 2 * a->pad - a->k) / a->stride + 1;
    out.w_out = (a->w + 2 * a->pad - a->k) / a->stride + 1;
    return out;
}

void pool2d_args_check(const Pool2dArgs *a) {
    const Pool2dArgs want = pool2d_args_out(a);
    YP_CHECK(a->h_out == want.h_out && a->w_out == want.w_out);
}

void pad2d_args_check(const Pad2dArgs *a) {
    YP_CHECK(a->n >= 0 && a->c >= 0 && a->h >= 0 && a->w >= 0);
    YP_CHECK(a->left >= 0 && a->right >= 0 && a->top >= 0 && a->bottom >= 0);
}

void attention_args_check(const AttentionArgs *a) {
    YP_CHECK(a->n >= 0 && a->tokens >= 1 && a->areas >= 1 && a->tokens % a->areas == 0);
    YP_CHECK(a->heads >= 1 && a->key_dim >= 1 && a->head_dim >= 1);
    YP_CHECK(a->q_c0 >= 0 && a->k_c0 >= 0 && a->v_c0 >= 0);
    const int64_t q_end = a->q_c0 + a->key_dim, k_end = a->k_c0 + a->key_dim, v_end = a->v_c0 + a->head_dim;
    // Disjoint within a head, and inside its own head_stride channels, so no two heads share one:
    // backward's threads and batched products then write disjoint channels of dqkv.
    YP_CHECK(q_end <= a->k_c0 || k_end <= a->q_c0);
    YP_CHECK(q_end <= a->v_c0 || v_end <= a->q_c0);
    YP_CHECK(k_end <= a->v_c0 || v_end <= a->k_c0);
    YP_CHECK(q_end <= a->head_stride && k_end <= a->head_stride && v_end <= a->head_stride);
    YP_CHECK(a->heads * a->head_stride <= a->qkv_c);
}
