#include <stdio.h>

#include "framework/data/image.h"
