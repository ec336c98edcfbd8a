/*
 * host_main.c - the firmware skeleton as a PC program: h2o_firmware.c + the stand (sim_hal.c)
 * behind a pty (default) or a real serial device.
 *
 * Why: the same firmware code a board runs can be driven by the real host stack
 * (firmware_bridge/link.py, onboard/run.py, the console) and by the conformance tests, over a
 * real tty, without hardware. With --device it talks to a USB-serial adapter at --baud, e.g. to
 * check a cable and the host's serial settings against a known-good firmware.
 *
 *   h2o_fw_host [--device PATH --baud N] [--rate-hz 200] [--watchdog-ms 100] [--seed N]
 *               [--sensor-dropout P] [--stuck-motor I --stuck-after-s T] [--duration-s T]
 *
 * Prints the device path (the pty slave a host opens) as its first line of output, then runs
 * ticks at --rate-hz paced by absolute deadlines (late ticks beyond two are skipped, not
 * burst, as firmware_bridge/virtual_robot.py). SIGINT/SIGTERM end it; it then prints its
 * counters as "name=value" lines on stdout and exits 0.
 */
#define _DEFAULT_SOURCE
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../h2o_firmware.h"
#include "sim_hal.h"

#define MAX_CATCH_UP_TICKS 2

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int signum) {
    (void)signum;
    stop_requested = 1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: h2o_fw_host [--device PATH --baud N] [--rate-hz HZ] [--watchdog-ms MS] [--seed N]\n"
            "                   [--sensor-dropout P] [--stuck-motor I --stuck-after-s T] [--duration-s T]\n");
}

static speed_t baud_constant(long baud) {
    switch (baud) {
    case 115200: return B115200;
    case 230400: return B230400;
#ifdef B460800
    case 460800: return B460800;
#endif
#ifdef B921600
    case 921600: return B921600;
#endif
#ifdef B1000000
    case 1000000: return B1000000;
#endif
#ifdef B1500000
    case 1500000: return B1500000;
#endif
#ifdef B2000000
    case 2000000: return B2000000;
#endif
#ifdef B3000000
    case 3000000: return B3000000;
#endif
    default: return (speed_t)0;
    }
}

/* Raw mode: no echo, no line editing, no CR/LF translation, 8N1, no flow control. */
static int make_raw(int fd, long baud) {
    struct termios t;
    if (tcgetattr(fd, &t) != 0) return -1;
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cflag &= ~(tcflag_t)CSTOPB;
#ifdef CRTSCTS
    t.c_cflag &= ~(tcflag_t)CRTSCTS;
#endif
    if (baud > 0) {
        speed_t s = baud_constant(baud);
        if (s == (speed_t)0) {
            fprintf(stderr, "h2o_fw_host: baud %ld not supported by this build\n", baud);
            return -1;
        }
        cfsetispeed(&t, s);
        cfsetospeed(&t, s);
    }
    return tcsetattr(fd, TCSANOW, &t);
}

/* A pty pair: the master is the firmware's end; the slave stays open here too, so reads on the
 * master never fail with EIO while no host is attached (as firmware_bridge/pty_port.py). */
static int open_pty(int *slave_fd, char *path, size_t path_cap) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    const char *name;
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) return -1;
    name = ptsname(master);
    if (name == NULL || strlen(name) >= path_cap) return -1;
    strcpy(path, name);
    *slave_fd = open(path, O_RDWR | O_NOCTTY);
    if (*slave_fd < 0 || make_raw(master, 0) != 0 || make_raw(*slave_fd, 0) != 0) return -1;
    return master;
}

static void print_counters(const h2o_fw_t *fw, const sim_hal_t *sim) {
    static const char *const type_names[H2O_N_FRAME_TYPES] = {
        "", "COMMAND", "STATE", "ENABLE", "DISABLE", "ESTOP", "ESTOP_CLEAR", "HEARTBEAT", "FAULT"};
    const h2o_fw_counters_t *c = &fw->counters;
    int i;
    printf("commands_accepted=%lu\ncommands_rejected=%lu\nenables=%lu\nenables_refused=%lu\n",
           (unsigned long)c->commands_accepted, (unsigned long)c->commands_rejected, (unsigned long)c->enables,
           (unsigned long)c->enables_refused);
    printf("disables=%lu\nestops=%lu\nestop_clears=%lu\nwatchdog_trips=%lu\ntorque_limited_ticks=%lu\n",
           (unsigned long)c->disables, (unsigned long)c->estops, (unsigned long)c->estop_clears,
           (unsigned long)c->watchdog_trips, (unsigned long)c->torque_limited_ticks);
    printf("ticks=%lu\nstates_sent=%lu\nfault_frames_sent=%lu\nheartbeats_echoed=%lu\nhost_seq_lost=%lu\n",
           (unsigned long)c->ticks, (unsigned long)c->states_sent, (unsigned long)c->fault_frames_sent,
           (unsigned long)c->heartbeats_echoed, (unsigned long)c->host_seq_lost);
    printf("tx_bytes_dropped=%lu\npowered=%d\n", (unsigned long)c->tx_bytes_dropped, sim->powered);
    for (i = 1; i < H2O_N_FRAME_TYPES; i++) printf("frames_in.%s=%lu\n", type_names[i], (unsigned long)c->frames_in[i]);
    for (i = 1; i < H2O_N_DROP_REASONS; i++)
        printf("dropped.%s=%lu\n", h2o_drop_reason_names[i], (unsigned long)fw->rx.dropped[i]);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *device = NULL;
    long baud = 0;
    double rate_hz = 200.0, watchdog_ms = 100.0, dropout = 0.0, stuck_after_s = 0.0, duration_s = 0.0;
    long seed = 0, stuck_motor = -1;
    char path[256];
    int fd, slave_fd = -1, i;
    uint64_t period_ns, next_tick, end_ns = 0;
    sim_hal_t sim;
    h2o_hal_t hal;
    h2o_fw_config_t cfg;
    static h2o_fw_t fw; /* static: about 1 KiB, kept off the stack as a board would */
    struct sigaction sa;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) { usage(); return 2; }
        if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--baud")) baud = strtol(v, NULL, 10);
        else if (!strcmp(a, "--rate-hz")) rate_hz = strtod(v, NULL);
        else if (!strcmp(a, "--watchdog-ms")) watchdog_ms = strtod(v, NULL);
        else if (!strcmp(a, "--seed")) seed = strtol(v, NULL, 10);
        else if (!strcmp(a, "--sensor-dropout")) dropout = strtod(v, NULL);
        else if (!strcmp(a, "--stuck-motor")) stuck_motor = strtol(v, NULL, 10);
        else if (!strcmp(a, "--stuck-after-s")) stuck_after_s = strtod(v, NULL);
        else if (!strcmp(a, "--duration-s")) duration_s = strtod(v, NULL);
        else { usage(); return 2; }
        i++;
    }
    if (!(rate_hz > 0.0 && rate_hz <= 20000.0) || !(watchdog_ms > 0.0) || stuck_motor >= H2O_N_ACTUATORS ||
        !(dropout >= 0.0 && dropout <= 1.0)) {
        usage();
        return 2;
    }

    if (device != NULL) {
        fd = open(device, O_RDWR | O_NOCTTY);
        if (fd < 0 || make_raw(fd, baud) != 0) {
            fprintf(stderr, "h2o_fw_host: cannot open %s: %s\n", device, strerror(errno));
            return 1;
        }
        strncpy(path, device, sizeof path - 1);
        path[sizeof path - 1] = '\0';
    } else {
        fd = open_pty(&slave_fd, path, sizeof path);
        if (fd < 0) {
            fprintf(stderr, "h2o_fw_host: cannot open a pty: %s\n", strerror(errno));
            return 1;
        }
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    sim_hal_init(&sim, &hal, fd, (uint32_t)seed);
    sim.dropout_prob = dropout;
    sim.stuck_motor = (int)stuck_motor;
    sim.stuck_after_us = (uint64_t)(stuck_after_s * 1e6);
    h2o_fw_default_config(&cfg);
    cfg.watchdog_us = (uint32_t)(watchdog_ms * 1000.0);
    h2o_fw_init(&fw, &cfg, &hal);

    printf("%s\n", path); /* first line: the device a host opens */
    fflush(stdout);

    period_ns = (uint64_t)(1e9 / rate_hz);
    next_tick = sim.t0_ns + period_ns;
    if (duration_s > 0.0) end_ns = sim.t0_ns + (uint64_t)(duration_s * 1e9);
    while (!stop_requested) {
        uint64_t now = sim_monotonic_ns();
        if (end_ns && now >= end_ns) break;
        if (now < next_tick) {
            uint64_t left = next_tick - now;
            struct timespec ts;
            fd_set rd;
            int ready;
            FD_ZERO(&rd);
            FD_SET(fd, &rd);
            ts.tv_sec = (time_t)(left / 1000000000u);
            ts.tv_nsec = (long)(left % 1000000000u);
            ready = pselect(fd + 1, &rd, NULL, NULL, &ts, NULL);
            if (ready > 0) {
                uint8_t buf[4096];
                ssize_t n = read(fd, buf, sizeof buf);
                if (n > 0) h2o_fw_receive(&fw, buf, (size_t)n);
                else if (n < 0 && errno != EAGAIN && errno != EINTR && errno != EIO) break;
            }
            continue;
        }
        h2o_fw_tick(&fw);
        next_tick += period_ns;
        now = sim_monotonic_ns();
        if (now > next_tick + period_ns) { /* stalled: skip what cannot be caught up */
            uint64_t missed = (now - next_tick) / period_ns;
            if (missed > MAX_CATCH_UP_TICKS) next_tick += missed * period_ns;
        }
    }
    print_counters(&fw, &sim);
    close(fd);
    if (slave_fd >= 0) close(slave_fd);
    return 0;
}
