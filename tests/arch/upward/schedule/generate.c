#include "framework/core/tensor.h"
