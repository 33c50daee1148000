// The table of module kinds, indexed by LayerKind.
#include <string.h>

#include "layers/layer.h"

extern const LayerKindOps layer_kind_conv, layer_kind_bottleneck, layer_kind_c2f, layer_kind_c3, layer_kind_sppf,
    layer_kind_upsample, layer_kind_concat, layer_kind_detect, layer_kind_v10detect, layer_kind_classify,
    layer_kind_c3k2, layer_kind_torchvision, layer_kind_repncspelan4, layer_kind_elan1, layer_kind_adown, layer_kind_aconv,
    layer_kind_sppelan, layer_kind_cblinear, layer_kind_cbfuse, layer_kind_identity;
extern const LayerKindOps layer_kind_nn_maxpool2d, layer_kind_nn_zeropad2d, layer_kind_spp, layer_kind_c2,
    layer_kind_ghostconv, layer_kind_dwconv, layer_kind_ghost_bottleneck, layer_kind_c3ghost, layer_kind_scdown,
    layer_kind_c2fcib, layer_kind_resnet_layer;
extern const LayerKindOps layer_kind_c2psa, layer_kind_a2c2f;
extern const LayerKindOps layer_kind_psa, layer_kind_nn_convtranspose2d;

const LayerKindOps *const layer_kinds[LAYER_KIND_COUNT] = {
    [LAYER_KIND_CONV] = &layer_kind_conv,
    [LAYER_KIND_BOTTLENECK] = &layer_kind_bottleneck,
    [LAYER_KIND_C2F] = &layer_kind_c2f,
    [LAYER_KIND_C3] = &layer_kind_c3,
    [LAYER_KIND_SPPF] = &layer_kind_sppf,
    [LAYER_KIND_UPSAMPLE] = &layer_kind_upsample,
    [LAYER_KIND_CONCAT] = &layer_kind_concat,
    [LAYER_KIND_DETECT] = &layer_kind_detect,
    [LAYER_KIND_V10DETECT] = &layer_kind_v10detect,
    [LAYER_KIND_CLASSIFY] = &layer_kind_classify,
    [LAYER_KIND_C3K2] = &layer_kind_c3k2,
    [LAYER_KIND_TORCHVISION] = &layer_kind_torchvision,
    [LAYER_KIND_REPNCSPELAN4] = &layer_kind_repncspelan4,
    [LAYER_KIND_ELAN1] = &layer_kind_elan1,
    [LAYER_KIND_ADOWN] = &layer_kind_adown,
    [LAYER_KIND_ACONV] = &layer_kind_aconv,
    [LAYER_KIND_SPPELAN] = &layer_kind_sppelan,
    [LAYER_KIND_CBLINEAR] = &layer_kind_cblinear,
    [LAYER_KIND_CBFUSE] = &layer_kind_cbfuse,
    [LAYER_KIND_IDENTITY] = &layer_kind_identity,
    [LAYER_KIND_NN_MAXPOOL2D] = &layer_kind_nn_maxpool2d,
    [LAYER_KIND_NN_ZEROPAD2D] = &layer_kind_nn_zeropad2d,
    [LAYER_KIND_SPP] = &layer_kind_spp,
    [LAYER_KIND_C2] = &layer_kind_c2,
    [LAYER_KIND_GHOSTCONV] = &layer_kind_ghostconv,
    [LAYER_KIND_DWCONV] = &layer_kind_dwconv,
    [LAYER_KIND_GHOST_BOTTLENECK] = &layer_kind_ghost_bottleneck,
    [LAYER_KIND_C3GHOST] = &layer_kind_c3ghost,
    [LAYER_KIND_SCDOWN] = &layer_kind_scdown,
    [LAYER_KIND_C2FCIB] = &layer_kind_c2fcib,
    [LAYER_KIND_RESNET_LAYER] = &layer_kind_resnet_layer,
    [LAYER_KIND_C2PSA] = &layer_kind_c2psa,
    [LAYER_KIND_A2C2F] = &layer_kind_a2c2f,
    [LAYER_KIND_PSA] = &layer_kind_psa,
    [LAYER_KIND_NN_CONVTRANSPOSE2D] = &layer_kind_nn_convtranspose2d,
};
_Static_assert(sizeof layer_kinds / sizeof *layer_kinds == LAYER_KIND_COUNT, "one entry per LayerKind");

LayerKind layer_kind_find(const char *module) {
    for (int k = 0; k < LAYER_KIND_COUNT; k++)
        if (!strcmp(layer_kinds[k]->name, module)) return (LayerKind)k;
    return LAYER_KIND_COUNT;
}
