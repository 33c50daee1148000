#include "partition/missing.h"
