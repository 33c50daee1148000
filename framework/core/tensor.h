// Tensor shapes and tensor handles.
//
// A Tensor is a view: it never owns its memory. Whoever allocated `data` (a Builder at model
// creation, or a test) frees it. Shapes are logical NCHW; how a backend lays the elements out in
// memory is its own business, which is why layers index tensors only through the backend.
#pragma once

#include <stdint.h>

typedef struct Shape {
    int64_t n, c, h, w;
} Shape;

typedef struct Tensor {
    void *data;        // backend memory in the backend's activation type (Backend.act); NULL when
                       // the model was only described (no backend)
    Shape shape;       // current logical shape, (N, C, H, W)
    int64_t capacity;  // elements that `data` can hold; shapes may shrink per call, never grow
} Tensor;

static inline int64_t shape_elems(Shape s) { return s.n * s.c * s.h * s.w; }
static inline int64_t shape_hw(Shape s) { return s.h * s.w; }
static inline Shape shape_make(int64_t n, int64_t c, int64_t h, int64_t w) {
    return (Shape){.n = n, .c = c, .h = h, .w = w};
}
static inline int64_t tensor_elems(const Tensor *t) { return shape_elems(t->shape); }
