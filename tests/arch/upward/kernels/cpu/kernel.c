// An upward include: kernels/ knows nothing about layers.
#include "layers/layer.h"
