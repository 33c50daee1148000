// Ground-truth boxes of one batch: the data pipeline produces them, the detection loss and the
// validation metrics consume them.
#pragma once

#include <stdint.h>

typedef struct TargetBox {
    int32_t image;       // index of the image within its batch
    int32_t cls;         // class id in [0, nc)
    float cx, cy, w, h;  // centre and size, normalised by the network input's width and height
} TargetBox;
