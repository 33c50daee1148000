#include "framework/core/error.h"
