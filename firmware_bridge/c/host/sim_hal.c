/* sim_hal.c - the robot on a stand (see sim_hal.h). POSIX. */
#define _POSIX_C_SOURCE 200809L

#include "sim_hal.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t sim_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_us(void *ctx) {
    sim_hal_t *sim = (sim_hal_t *)ctx;
    return (sim_monotonic_ns() - sim->t0_ns) / 1000u;
}

static double uniform(sim_hal_t *sim) {
    uint32_t x = sim->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    sim->rng = x;
    return (double)x / 4294967296.0;
}

static void read_sensors(void *ctx, h2o_sensors_t *out) {
    sim_hal_t *sim = (sim_hal_t *)ctx;
    memset(out, 0, sizeof *out); /* joints at zero, still; base level and at rest */
    out->imu_quat[0] = 1.0f;
    out->imu_acc[2] = 9.81f;
    /* Nothing moves, so a held value equals a fresh one; only the flag shows the dropout. */
    out->stale = (uint8_t)(sim->have_read && sim->dropout_prob > 0.0 && uniform(sim) < sim->dropout_prob);
    sim->have_read = 1;
    if (sim->stuck_motor >= 0 && now_us(ctx) >= sim->stuck_after_us)
        out->stuck_mask = (uint8_t)(1u << sim->stuck_motor);
}

static void write_torques(void *ctx, const float tau[H2O_N_ACTUATORS]) {
    sim_hal_t *sim = (sim_hal_t *)ctx;
    memcpy(sim->tau, tau, sizeof sim->tau);
}

static void set_power(void *ctx, int on) { ((sim_hal_t *)ctx)->powered = on; }

/* Like a UART without flow control: what the kernel buffer does not take is dropped. */
static size_t serial_write(void *ctx, const uint8_t *data, size_t n) {
    sim_hal_t *sim = (sim_hal_t *)ctx;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(sim->fd, data + done, n - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        break; /* EAGAIN (buffer full), EIO (no reader on a pty): drop */
    }
    return done;
}

void sim_hal_init(sim_hal_t *sim, h2o_hal_t *hal, int fd, uint32_t seed) {
    memset(sim, 0, sizeof *sim);
    sim->fd = fd;
    sim->t0_ns = sim_monotonic_ns();
    sim->rng = seed ? seed : 0x9E3779B9u;
    sim->stuck_motor = -1;
    hal->ctx = sim;
    hal->now_us = now_us;
    hal->read_sensors = read_sensors;
    hal->write_torques = write_torques;
    hal->set_power = set_power;
    hal->serial_write = serial_write;
}
