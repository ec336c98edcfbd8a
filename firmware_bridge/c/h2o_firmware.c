/*
 * h2o_firmware.c - the motor board's rules (see h2o_firmware.h and docs/protocol.md section
 * "Firmware behaviour"). Portable C99: no heap, no OS, no <math.h>, float only (no double
 * arithmetic, so a single-precision FPU does all of it).
 */
#include "h2o_firmware.h"

#include <string.h>

/* firmware_bridge/firmware.py DEFAULT_TORQUE_LIMIT_NM, MAX_KP, MAX_KD. */
static const float default_limits[H2O_N_ACTUATORS] = {27.0f, 27.0f, 5.0f, 27.0f, 27.0f, 5.0f};

void h2o_fw_default_config(h2o_fw_config_t *cfg) {
    cfg->watchdog_us = 100000u;
    memcpy(cfg->torque_limit, default_limits, sizeof cfg->torque_limit);
    cfg->kp_max = 500.0f;
    cfg->kd_max = 50.0f;
}

static void write_zero_torques(h2o_fw_t *fw) {
    memset(fw->tau, 0, sizeof fw->tau);
    fw->hal->write_torques(fw->hal->ctx, fw->tau);
}

/* Every mode change goes through here so motor power follows ENABLED exactly. */
static void set_mode(h2o_fw_t *fw, uint8_t mode) {
    uint8_t old = fw->mode;
    if (old == mode) return;
    fw->mode = mode;
    if (old == H2O_MODE_ENABLED) {
        write_zero_torques(fw); /* do not wait for the next tick to stop pushing */
        if (fw->hal->set_power) fw->hal->set_power(fw->hal->ctx, 0);
    } else if (mode == H2O_MODE_ENABLED && fw->hal->set_power) {
        fw->hal->set_power(fw->hal->ctx, 1);
    }
}

void h2o_fw_init(h2o_fw_t *fw, const h2o_fw_config_t *cfg, const h2o_hal_t *hal) {
    memset(fw, 0, sizeof *fw);
    fw->cfg = *cfg;
    fw->hal = hal;
    fw->mode = H2O_MODE_DISABLED;
    h2o_decoder_init(&fw->rx);
    if (hal->set_power) hal->set_power(hal->ctx, 0);
    write_zero_torques(fw);
}

/* ------------------------------------------------------------------------------ frame rules */

void h2o_fw_on_enable(h2o_fw_t *fw, uint64_t now_us) {
    if (fw->mode == H2O_MODE_ESTOP) { /* refused: no FAULT frame, no bit change */
        fw->counters.enables_refused++;
        return;
    }
    fw->counters.enables++;
    set_mode(fw, H2O_MODE_ENABLED);
    fw->faults &= ~H2O_FAULT_WATCHDOG;
    fw->last_command_us = now_us; /* ENABLE starts a watchdog period of its own */
    memset(&fw->command, 0, sizeof fw->command); /* never resume a command from before */
}

void h2o_fw_on_disable(h2o_fw_t *fw) {
    fw->counters.disables++;
    if (fw->mode != H2O_MODE_ESTOP) set_mode(fw, H2O_MODE_DISABLED);
}

void h2o_fw_on_estop(h2o_fw_t *fw) {
    fw->counters.estops++;
    set_mode(fw, H2O_MODE_ESTOP);
    fw->faults |= H2O_FAULT_ESTOP_LATCHED;
}

void h2o_fw_on_estop_clear(h2o_fw_t *fw) {
    if (fw->mode != H2O_MODE_ESTOP) return;
    fw->counters.estop_clears++;
    set_mode(fw, H2O_MODE_DISABLED);
    fw->faults &= ~H2O_FAULT_ESTOP_LATCHED;
}

static int command_is_safe(const h2o_fw_config_t *cfg, const h2o_command_t *c) {
    int i;
    for (i = 0; i < H2O_N_ACTUATORS; i++) {
        if (!h2o_f32_is_finite(c->q_des[i]) || !h2o_f32_is_finite(c->qd_des[i]) ||
            !h2o_f32_is_finite(c->kp[i]) || !h2o_f32_is_finite(c->kd[i]) || !h2o_f32_is_finite(c->tau_ff[i]))
            return 0;
        /* A huge or negative gain makes the joint servo unstable; "!(x <= max)" also refuses NaN. */
        if (c->kp[i] < 0.0f || !(c->kp[i] <= cfg->kp_max) || c->kd[i] < 0.0f || !(c->kd[i] <= cfg->kd_max))
            return 0;
    }
    return 1;
}

int h2o_fw_on_command(h2o_fw_t *fw, const h2o_command_t *cmd, uint64_t now_us) {
    if (!command_is_safe(&fw->cfg, cmd)) {
        /* Keep applying the last accepted command; only an accepted one feeds the watchdog. */
        fw->counters.commands_rejected++;
        fw->faults |= H2O_FAULT_BAD_COMMAND;
        return 0;
    }
    fw->counters.commands_accepted++;
    fw->faults &= ~H2O_FAULT_BAD_COMMAND;
    fw->command = *cmd; /* stored in any mode, applied only while ENABLED */
    fw->last_command_us = now_us;
    return 1;
}

/* ------------------------------------------------------------------------------ sending */

static void send_wire(h2o_fw_t *fw, const uint8_t *wire, size_t n) {
    size_t taken;
    fw->tx_seq++; /* one seq per frame built, sent whole or not: the host sees the loss as a gap */
    if (n == 0) return;
    taken = fw->hal->serial_write(fw->hal->ctx, wire, n);
    if (taken < n) fw->counters.tx_bytes_dropped += (uint32_t)(n - taken);
}

/* ------------------------------------------------------------------------------ receiving */

static void dispatch(h2o_fw_t *fw, const h2o_frame_t *f) {
    uint8_t wire[H2O_MAX_WIRE_FRAME];
    uint64_t now = fw->hal->now_us(fw->hal->ctx);
    fw->counters.frames_in[f->type]++;
    fw->counters.host_seq_lost += h2o_seq_update(&fw->host_seq, f->seq);
    switch (f->type) {
    case H2O_COMMAND: {
        h2o_command_t cmd;
        h2o_unpack_command(f->payload, &cmd);
        h2o_fw_on_command(fw, &cmd, now);
        break;
    }
    case H2O_ENABLE: h2o_fw_on_enable(fw, now); break;
    case H2O_DISABLE: h2o_fw_on_disable(fw); break;
    case H2O_ESTOP: h2o_fw_on_estop(fw); break;
    case H2O_ESTOP_CLEAR: h2o_fw_on_estop_clear(fw); break;
    case H2O_HEARTBEAT: /* echo the host's clock value unchanged, under our own seq, at once */
        send_wire(fw, wire, h2o_encode_heartbeat(h2o_get_u64(f->payload), fw->tx_seq, wire));
        fw->counters.heartbeats_echoed++;
        break;
    default: break; /* STATE, FAULT: firmware-to-host types, counted above and ignored */
    }
}

void h2o_fw_receive(h2o_fw_t *fw, const uint8_t *data, size_t n) {
    h2o_frame_t frame;
    size_t i;
    for (i = 0; i < n; i++)
        if (h2o_decoder_push(&fw->rx, data[i], &frame)) dispatch(fw, &frame);
}

/* ------------------------------------------------------------------------------ the tick */

static float clip(float v, float limit) {
    if (v > limit) return limit;
    if (v < -limit) return -limit;
    return v;
}

/* tau = clip(kp (q_des - q) + kd (qd_des - qd) + clip(tau_ff)); TORQUE_LIMITED when the unclipped
 * estimate exceeds the limit on any actuator. */
static void compute_torques(h2o_fw_t *fw, const h2o_sensors_t *s) {
    const h2o_command_t *c = &fw->command;
    int i, limited = 0;
    for (i = 0; i < H2O_N_ACTUATORS; i++) {
        float lim = fw->cfg.torque_limit[i];
        float servo = c->kp[i] * (c->q_des[i] - s->joint_pos[i]) + c->kd[i] * (c->qd_des[i] - s->joint_vel[i]);
        float estimate = servo + c->tau_ff[i];
        float tau = clip(servo + clip(c->tau_ff[i], lim), lim);
        if (estimate > lim || estimate < -lim) limited = 1;
        fw->tau[i] = h2o_f32_is_finite(tau) ? tau : 0.0f; /* a NaN sensor reading must not reach a motor */
    }
    if (limited) {
        fw->faults |= H2O_FAULT_TORQUE_LIMITED;
        fw->counters.torque_limited_ticks++;
    } else {
        fw->faults &= ~H2O_FAULT_TORQUE_LIMITED;
    }
}

void h2o_fw_tick(h2o_fw_t *fw) {
    const h2o_hal_t *hal = fw->hal;
    uint64_t now = hal->now_us(hal->ctx);
    h2o_sensors_t s;
    h2o_state_t st;
    uint8_t wire[H2O_MAX_WIRE_FRAME];
    uint32_t state_faults, risen;

    fw->counters.ticks++;
    if (fw->mode == H2O_MODE_ENABLED && now - fw->last_command_us > fw->cfg.watchdog_us) {
        fw->counters.watchdog_trips++;
        set_mode(fw, H2O_MODE_DISABLED);
        fw->faults |= H2O_FAULT_WATCHDOG; /* stays set until the next accepted ENABLE */
    }

    memset(&s, 0, sizeof s);
    hal->read_sensors(hal->ctx, &s);
    if (s.stuck_mask) fw->faults |= H2O_FAULT_MOTOR_STUCK; /* latched until reset */

    if (fw->mode == H2O_MODE_ENABLED) {
        compute_torques(fw, &s);
    } else {
        memset(fw->tau, 0, sizeof fw->tau);
        fw->faults &= ~H2O_FAULT_TORQUE_LIMITED;
    }
    hal->write_torques(hal->ctx, fw->tau);

    state_faults = fw->faults | (s.stale ? H2O_FAULT_SENSOR_DROPOUT : 0u); /* this tick only */
    memset(&st, 0, sizeof st);
    st.t_us = now;
    memcpy(st.joint_pos, s.joint_pos, sizeof st.joint_pos);
    memcpy(st.joint_vel, s.joint_vel, sizeof st.joint_vel);
    memcpy(st.joint_torque, fw->tau, sizeof st.joint_torque);
    memcpy(st.imu_quat, s.imu_quat, sizeof st.imu_quat);
    memcpy(st.imu_gyro, s.imu_gyro, sizeof st.imu_gyro);
    memcpy(st.imu_acc, s.imu_acc, sizeof st.imu_acc);
    st.mode = fw->mode;
    st.faults = state_faults;

    /* A FAULT frame for each reported bit that is set now and was clear in the last STATE sent,
     * right before this tick's STATE, stamped with the same clock. */
    risen = state_faults & H2O_FAULTS_REPORTED & ~fw->reported;
    fw->reported = state_faults & H2O_FAULTS_REPORTED;
    if (risen) {
        h2o_fault_report_t r;
        r.t_us = now;
        r.faults = risen;
        r.detail = 0u;
        send_wire(fw, wire, h2o_encode_fault(&r, fw->tx_seq, wire));
        fw->counters.fault_frames_sent++;
    }
    send_wire(fw, wire, h2o_encode_state(&st, fw->tx_seq, wire));
    fw->counters.states_sent++;
}
