/*
 * The one clock for durations (CLOCK_MONOTONIC, microseconds): stage
 * times, histograms and deadlines (vDSO: no system call, so no seccomp
 * rule).
 */
#ifndef MSM_CLOCK_H
#define MSM_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
clock_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif
