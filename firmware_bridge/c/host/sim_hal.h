/*
 * sim_hal.h - a PC implementation of h2o_hal_t: the robot on a stand behind a file descriptor.
 *
 * Why a stand and not a simulator: the host build exists to test the firmware's rules and the
 * serial protocol on a PC (tests/firmware_bridge/test_conformance.py runs it behind a pty). The
 * joints hold still, so every torque the rules produce is visible unchanged in STATE; the same
 * plant is firmware_bridge.stand_plant.StandPlant on the Python side.
 *
 * Fault injection mirrors firmware_bridge/faults.py's sensor faults: a sensor dropout probability
 * per tick (never on the first read) and one actuator that jams from a firmware time on.
 */
#ifndef H2O_SIM_HAL_H
#define H2O_SIM_HAL_H

#include <stdint.h>

#include "../h2o_hal.h"

typedef struct {
    int fd;                   /* serial device or pty master, non-blocking */
    uint64_t t0_ns;           /* CLOCK_MONOTONIC at boot: now_us counts from here */
    float tau[H2O_N_ACTUATORS];
    int powered;
    int have_read;
    uint32_t rng;             /* xorshift32 state for the dropout draws */
    double dropout_prob;      /* 0..1 */
    int stuck_motor;          /* -1: none */
    uint64_t stuck_after_us;
} sim_hal_t;

/* Fill `hal` with the stand's functions on `fd`; seed picks the dropout draws. */
void sim_hal_init(sim_hal_t *sim, h2o_hal_t *hal, int fd, uint32_t seed);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t sim_monotonic_ns(void);

#endif /* H2O_SIM_HAL_H */
