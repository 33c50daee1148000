// Prints "WIDTHxHEIGHT" of each image file given (decoded whole with image_read, so a file that is
// not a complete PNG or JPEG fails); for shell tests of written pictures. Exit 2 with the reader's
// one-line message on the first file that does not decode.
#include <stdio.h>

#include "framework/data/image_io.h"

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        Image im;
        Error err = {0};
        if (!image_read(argv[i], &im, &err)) {
            fprintf(stderr, "%s\n", err.message);
            return YP_EXIT_USAGE;
        }
        printf("%dx%d\n", im.width, im.height);
        image_free(&im);
    }
    return 0;
}
