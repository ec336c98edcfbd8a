/*
 * h2o_hal.h - what the firmware skeleton (h2o_firmware.c) needs from a board.
 *
 * Port the firmware by filling one h2o_hal_t with your board's functions; nothing else in
 * h2o_firmware.c or h2o_protocol.h touches hardware. host/sim_hal.c is a PC implementation
 * (a robot on a stand behind a pty) that the conformance tests run.
 *
 * Contract of each function (all are called from the one context that calls h2o_fw_receive and
 * h2o_fw_tick; none is called from an interrupt by the skeleton):
 * - now_us: monotonic microseconds since boot, never going backwards (a 64-bit count of a 1 MHz
 *   timer, or a 32-bit one extended on wrap). Stamps STATE and FAULT frames and times the watchdog.
 * - read_sensors: the newest encoder and IMU values, in the units and axes of docs/protocol.md
 *   and docs/bringup.md (joint zero offsets and signs already applied). Set `stale` when a value
 *   could not be read this tick and the previous one is repeated (the firmware flags
 *   SENSOR_DROPOUT), and bit i of `stuck_mask` when the driver of actuator i reports a jam or a
 *   driver fault (MOTOR_STUCK, latched until reset).
 * - write_torques: the torque each actuator should produce until the next call, N·m, already
 *   clipped to its limit; all zeros whenever the mode is not ENABLED.
 * - set_power: optional (NULL allowed). Called with 1 on entering ENABLED and 0 on leaving it:
 *   the place to switch motor driver enable pins or a contactor.
 * - serial_write: queue bytes for the UART without blocking; return how many were taken. The
 *   skeleton counts the rest as dropped (a full TX buffer must not stall the control tick).
 */
#ifndef H2O_HAL_H
#define H2O_HAL_H

#include <stddef.h>
#include <stdint.h>

#include "h2o_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float joint_pos[H2O_N_ACTUATORS]; /* rad, calibrated zero, wheels accumulate (not wrapped) */
    float joint_vel[H2O_N_ACTUATORS]; /* rad/s */
    float imu_quat[4];                /* w, x, y, z: base orientation in the world frame */
    float imu_gyro[3];                /* rad/s, base frame (x forward, y left, z up) */
    float imu_acc[3];                 /* m/s^2 specific force, base frame (+9.81 on z at rest) */
    uint8_t stale;                    /* nonzero: some value is repeated from an earlier read */
    uint8_t stuck_mask;               /* bit i: actuator i jammed or its driver faulted */
} h2o_sensors_t;

typedef struct {
    void *ctx; /* passed back to every function: your board or simulation state */
    uint64_t (*now_us)(void *ctx);
    void (*read_sensors)(void *ctx, h2o_sensors_t *out);
    void (*write_torques)(void *ctx, const float tau[H2O_N_ACTUATORS]);
    void (*set_power)(void *ctx, int on);
    size_t (*serial_write)(void *ctx, const uint8_t *data, size_t n);
} h2o_hal_t;

#ifdef __cplusplus
}
#endif

#endif /* H2O_HAL_H */
