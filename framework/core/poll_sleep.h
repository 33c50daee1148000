// How a rank waits for a message without a progress thread: it tests, sleeps, tests again. The sleeps
// grow from POLL_SLEEP_FIRST_NS to POLL_SLEEP_MAX_NS: short enough that a message that arrives soon is
// seen soon, long enough that a waiting rank leaves its core to a rank that computes. A large MPI
// message moves in rounds (its header, the receiver's answer, the data), each only inside a
// transport call of one side, so a receiver that sleeps long slows every round: with 4 ranks on 2
// cores, 1 ms sleeps made a 4-stage step 10 % slower than 50 us ones (281 against 253 ms). Each wake
// still costs the core it lands on (a study calibrates how much: cluster.wait_cost).
#pragma once

enum { POLL_SLEEP_FIRST_NS = 20000, POLL_SLEEP_MAX_NS = 50000 };

// Sleeps *sleep_ns (start it at POLL_SLEEP_FIRST_NS), then lengthens it for the next wait.
void poll_sleep(long *sleep_ns);

// Waits as a rank that nothing reaches, until killed: what a study's calibration runs beside
// computing ranks to measure what waiting ranks cost them.
_Noreturn void poll_sleep_forever(void);
