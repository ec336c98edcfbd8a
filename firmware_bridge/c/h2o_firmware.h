/*
 * h2o_firmware.h - the motor board's rules over the serial protocol, portable C99.
 *
 * The skeleton a team ports to its MCU: power state machine (DISABLED / ENABLED / ESTOP), e-stop
 * latch, COMMAND watchdog, gain and torque limits, fault bits and FAULT frames. The rules are
 * those of firmware_bridge/firmware.py and docs/protocol.md ("Firmware behaviour"); the
 * conformance suite (tests/firmware_bridge/test_conformance.py) runs the same checks against
 * both. No heap, no OS: the board calls two functions.
 *
 *   h2o_fw_receive(&fw, bytes, n)   whenever UART bytes arrived (main loop, not the ISR)
 *   h2o_fw_tick(&fw)                once per control period (e.g. 1 kHz from a timer flag)
 *
 * Frames are acted on as they arrive (a HEARTBEAT is echoed at once); torques, the watchdog,
 * FAULT and STATE frames happen in the tick.
 */
#ifndef H2O_FIRMWARE_H
#define H2O_FIRMWARE_H

#include <stdint.h>

#include "h2o_hal.h"
#include "h2o_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint32_t watchdog_us;                   /* ENABLED and no accepted COMMAND for longer -> DISABLED */
    float torque_limit[H2O_N_ACTUATORS];    /* N·m per actuator */
    float kp_max;                           /* COMMANDs with kp outside [0, kp_max] are rejected */
    float kd_max;                           /* likewise kd */
} h2o_fw_config_t;

typedef struct {
    uint32_t commands_accepted;
    uint32_t commands_rejected;             /* BAD_COMMAND: non-finite value or gain out of range */
    uint32_t enables;
    uint32_t enables_refused;               /* ENABLE while the e-stop is latched */
    uint32_t disables;
    uint32_t estops;
    uint32_t estop_clears;
    uint32_t watchdog_trips;
    uint32_t torque_limited_ticks;
    uint32_t ticks;
    uint32_t states_sent;
    uint32_t fault_frames_sent;
    uint32_t heartbeats_echoed;
    uint32_t frames_in[H2O_N_FRAME_TYPES];  /* accepted frames by type code, host-bound ones too */
    uint32_t host_seq_lost;                 /* gaps in the host's seq */
    uint32_t tx_bytes_dropped;              /* serial_write took fewer bytes than offered */
} h2o_fw_counters_t;

typedef struct {
    h2o_fw_config_t cfg;
    const h2o_hal_t *hal;
    uint8_t mode;                           /* H2O_MODE_* */
    uint32_t faults;                        /* H2O_FAULT_* bits, as in the next STATE */
    uint32_t reported;                      /* reported bits set in the last STATE sent */
    h2o_command_t command;                  /* last accepted COMMAND (zeros after ENABLE) */
    uint64_t last_command_us;               /* watchdog reference: last accepted COMMAND or ENABLE */
    float tau[H2O_N_ACTUATORS];             /* torques written this tick */
    uint16_t tx_seq;                        /* seq of the next frame sent; starts at 0 */
    h2o_decoder_t rx;
    h2o_seq_tracker_t host_seq;
    h2o_fw_counters_t counters;
} h2o_fw_t;

/* The defaults of firmware_bridge/firmware.py: 100 ms watchdog, 27 N·m legs, 5 N·m wheels,
 * kp <= 500, kd <= 50. */
void h2o_fw_default_config(h2o_fw_config_t *cfg);

/* Boot: mode DISABLED, no faults, zero torques written, power off. */
void h2o_fw_init(h2o_fw_t *fw, const h2o_fw_config_t *cfg, const h2o_hal_t *hal);

/* Bytes from the host, any chunking. */
void h2o_fw_receive(h2o_fw_t *fw, const uint8_t *data, size_t n);

/* One control tick: watchdog, sensors, torques, FAULT (if a reported bit rose), STATE. */
void h2o_fw_tick(h2o_fw_t *fw);

/* The rules one frame at a time (h2o_fw_receive calls these; exposed for unit tests). */
void h2o_fw_on_enable(h2o_fw_t *fw, uint64_t now_us);
void h2o_fw_on_disable(h2o_fw_t *fw);
void h2o_fw_on_estop(h2o_fw_t *fw);
void h2o_fw_on_estop_clear(h2o_fw_t *fw);
int h2o_fw_on_command(h2o_fw_t *fw, const h2o_command_t *cmd, uint64_t now_us);

#ifdef __cplusplus
}
#endif

#endif /* H2O_FIRMWARE_H */
