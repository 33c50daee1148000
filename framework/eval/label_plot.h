// labels.jpg: what a detection training set holds, drawn as Ultralytics' plot_labels draws it
// (ultralytics/utils/plotting.py), on a 1600 x 1600 picture (its 8 x 8 inch figure at 200 dpi) of
// four panels:
//   top left      instances per class: bars in the class palette colours, each with its count, the
//                 class names under them (up to 29 classes; more: the axis reads "classes");
//   top right     the first 500 boxes' shapes, centred, outlined in their class colours;
//   bottom left   a 50 x 50 histogram of box centres (x, y), white (none) to blue (the most);
//   bottom right  the same of box sizes (width, height).
// Axes are the normalised 0..1 coordinates with ticks every 0.2 (y grows downwards, as in an image).
#pragma once

#include <stdint.h>

#include "framework/data/dataset.h"
#include "framework/data/image_io.h"

// boxes: n of them (n may be 0: empty panels); names: nc class names or NULL (class indices).
// Allocates *out (which holds nothing yet).
void label_plot_draw(const DatasetBox *boxes, int64_t n, const char *const *names, int nc, Image *out);
