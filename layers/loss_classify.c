// Ultralytics 8.4's v8ClassificationLoss: F.cross_entropy(logits, labels, reduction="mean"), which
// the trainer back-propagates as it is (unlike detection, not multiplied by the batch size).
#include <math.h>
#include <stddef.h>

#include "layers/loss.h"

double classify_loss_compute(int64_t batch_n, int64_t nc, const float *logits, const int32_t *labels,
                             float *dlogits) {
    YP_CHECK(batch_n >= 1 && nc >= 1);
    double total = 0;
    for (int64_t i = 0; i < batch_n; i++) {
        const float *x = logits + i * nc;
        YP_CHECK(labels[i] >= 0 && labels[i] < nc);
        double top = x[0], sum = 0;
        for (int64_t c = 1; c < nc; c++) top = fmax(top, (double)x[c]);
        for (int64_t c = 0; c < nc; c++) sum += exp((double)x[c] - top);
        total += top + log(sum) - (double)x[labels[i]];
        if (!dlogits) continue;
        // d mean / d x = (softmax(x) - one_hot(label)) / batch_n
        for (int64_t c = 0; c < nc; c++)
            dlogits[i * nc + c] = (float)((exp((double)x[c] - top) / sum - (c == labels[i])) / (double)batch_n);
    }
    return total / (double)batch_n;
}
