#include "framework/core/poll_sleep.h"

#include <time.h>

void poll_sleep(long *sleep_ns) {
    nanosleep(&(struct timespec){.tv_nsec = *sleep_ns}, NULL);
    *sleep_ns = *sleep_ns * 2 < POLL_SLEEP_MAX_NS ? *sleep_ns * 2 : POLL_SLEEP_MAX_NS;
}

_Noreturn void poll_sleep_forever(void) {
    long sleep_ns = POLL_SLEEP_FIRST_NS;
    for (;;) poll_sleep(&sleep_ns);
}
