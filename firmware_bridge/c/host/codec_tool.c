/*
 * codec_tool.c - h2o_protocol.h behind a line-based text interface, for interoperability tests.
 *
 * Why: tests/firmware_bridge/test_c_codec.py holds the C codec byte-for-byte equal to
 * protocol/frames.py in both directions; one process answering thousands of lines keeps that
 * fast. Every value crosses as text (floats as their 8-hex-digit bit patterns), so a packing bug
 * that is symmetric in C (e.g. big-endian both ways) still shows.
 *
 *   codec_tool encode       line "TYPE SEQ FIELDS..." -> wire bytes (hex, delimiter included)
 *   codec_tool decode       line = hex of a byte stream fed to a fresh decoder, byte by byte ->
 *                           "FRAME;FRAME;...|oversized cobs short crc bad_version unknown_type bad_length"
 *   codec_tool cobs-encode  line = hex -> hex
 *   codec_tool cobs-decode  line = hex -> hex, or "error"
 *   codec_tool crc          line = hex -> crc as 8 hex digits
 *
 * FIELDS by type (decimal integers, floats as hex bits):
 *   COMMAND (1): 30 floats (q_des, qd_des, kp, kd, tau_ff)
 *   STATE (2):   t_us, 28 floats (joint_pos, joint_vel, joint_torque, imu_quat, imu_gyro, imu_acc), mode, faults
 *   HEARTBEAT (7): t_us        FAULT (8): t_us faults detail        ENABLE..ESTOP_CLEAR (3-6): none
 * A decoded FRAME is printed as "TYPE SEQ FIELDS..." in the same format.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../h2o_protocol.h"

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Hex text (no separators) -> bytes; returns the byte count or -1. */
static long parse_hex(const char *s, uint8_t *out, size_t cap) {
    size_t n = 0;
    while (s[0] && s[0] != '\n' && s[0] != '\r') {
        int hi = hexval(s[0]), lo = s[1] ? hexval(s[1]) : -1;
        if (hi < 0 || lo < 0 || n >= cap) return -1;
        out[n++] = (uint8_t)(hi << 4 | lo);
        s += 2;
    }
    return (long)n;
}

static void print_hex(const uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) printf("%02x", p[i]);
}

static void print_f32s(const float *v, int n) {
    int i;
    for (i = 0; i < n; i++) printf(" %08" PRIx32, h2o_f32_bits(v[i]));
}

/* "TYPE SEQ FIELDS" of one decoded frame, through the typed unpack functions. */
static void print_frame(const h2o_frame_t *f) {
    printf("%u %u", (unsigned)f->type, (unsigned)f->seq);
    if (f->type == H2O_COMMAND) {
        h2o_command_t c;
        h2o_unpack_command(f->payload, &c);
        print_f32s(c.q_des, 6), print_f32s(c.qd_des, 6), print_f32s(c.kp, 6), print_f32s(c.kd, 6);
        print_f32s(c.tau_ff, 6);
    } else if (f->type == H2O_STATE) {
        h2o_state_t s;
        h2o_unpack_state(f->payload, &s);
        printf(" %" PRIu64, s.t_us);
        print_f32s(s.joint_pos, 6), print_f32s(s.joint_vel, 6), print_f32s(s.joint_torque, 6);
        print_f32s(s.imu_quat, 4), print_f32s(s.imu_gyro, 3), print_f32s(s.imu_acc, 3);
        printf(" %u %" PRIu32, (unsigned)s.mode, s.faults);
    } else if (f->type == H2O_HEARTBEAT) {
        printf(" %" PRIu64, h2o_get_u64(f->payload));
    } else if (f->type == H2O_FAULT) {
        h2o_fault_report_t r;
        h2o_unpack_fault(f->payload, &r);
        printf(" %" PRIu64 " %" PRIu32 " %" PRIu32, r.t_us, r.faults, r.detail);
    }
}

/* Tokenizer over one line. */
static char *next_token(char **cursor) {
    char *t = strtok(*cursor, " \t\r\n");
    *cursor = NULL;
    return t;
}
static int read_f32s(char **cur, float *v, int n) {
    int i;
    for (i = 0; i < n; i++) {
        char *t = next_token(cur);
        if (!t) return -1;
        v[i] = h2o_f32_from_bits((uint32_t)strtoul(t, NULL, 16));
    }
    return 0;
}
static int read_u64(char **cur, uint64_t *v) {
    char *t = next_token(cur);
    if (!t) return -1;
    *v = (uint64_t)strtoull(t, NULL, 10);
    return 0;
}

/* Build a frame from "TYPE SEQ FIELDS" through the typed encoders; 0 on a bad line. */
static size_t encode_line(char *line, uint8_t out[H2O_MAX_WIRE_FRAME]) {
    char *cur = line, *t_type = next_token(&cur), *t_seq = next_token(&cur);
    unsigned type;
    uint16_t seq;
    uint64_t u;
    if (!t_type || !t_seq) return 0;
    type = (unsigned)strtoul(t_type, NULL, 10);
    seq = (uint16_t)strtoul(t_seq, NULL, 10);
    switch (type) {
    case H2O_COMMAND: {
        h2o_command_t c;
        if (read_f32s(&cur, c.q_des, 6) || read_f32s(&cur, c.qd_des, 6) || read_f32s(&cur, c.kp, 6) ||
            read_f32s(&cur, c.kd, 6) || read_f32s(&cur, c.tau_ff, 6))
            return 0;
        return h2o_encode_command(&c, seq, out);
    }
    case H2O_STATE: {
        h2o_state_t s;
        if (read_u64(&cur, &s.t_us) || read_f32s(&cur, s.joint_pos, 6) || read_f32s(&cur, s.joint_vel, 6) ||
            read_f32s(&cur, s.joint_torque, 6) || read_f32s(&cur, s.imu_quat, 4) || read_f32s(&cur, s.imu_gyro, 3) ||
            read_f32s(&cur, s.imu_acc, 3) || read_u64(&cur, &u))
            return 0;
        s.mode = (uint8_t)u;
        if (read_u64(&cur, &u)) return 0;
        s.faults = (uint32_t)u;
        return h2o_encode_state(&s, seq, out);
    }
    case H2O_HEARTBEAT:
        if (read_u64(&cur, &u)) return 0;
        return h2o_encode_heartbeat(u, seq, out);
    case H2O_FAULT: {
        h2o_fault_report_t r;
        if (read_u64(&cur, &r.t_us) || read_u64(&cur, &u)) return 0;
        r.faults = (uint32_t)u;
        if (read_u64(&cur, &u)) return 0;
        r.detail = (uint32_t)u;
        return h2o_encode_fault(&r, seq, out);
    }
    default: return h2o_encode_control((uint8_t)type, seq, out);
    }
}

static void decode_stream(const uint8_t *data, size_t n) {
    static const int order[] = {H2O_DROP_OVERSIZED, H2O_DROP_COBS, H2O_DROP_SHORT, H2O_DROP_CRC,
                                H2O_DROP_BAD_VERSION, H2O_DROP_UNKNOWN_TYPE, H2O_DROP_BAD_LENGTH};
    h2o_decoder_t d;
    h2o_frame_t f;
    size_t i;
    int first = 1;
    h2o_decoder_init(&d);
    for (i = 0; i < n; i++) {
        if (!h2o_decoder_push(&d, data[i], &f)) continue;
        fputs(first ? "" : ";", stdout);
        first = 0;
        print_frame(&f);
    }
    printf("|");
    for (i = 0; i < sizeof order / sizeof order[0]; i++) printf("%s%" PRIu32, i ? " " : "", d.dropped[order[i]]);
}

int main(int argc, char **argv) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    static uint8_t buf[1 << 20], out[(1 << 20) + (1 << 13)];
    const char *mode = argc > 1 ? argv[1] : "";
    if (argc != 2) {
        fprintf(stderr, "usage: codec_tool encode|decode|cobs-encode|cobs-decode|crc < lines\n");
        return 2;
    }
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        if (!strcmp(mode, "encode")) {
            uint8_t wire[H2O_MAX_WIRE_FRAME];
            size_t n = encode_line(line, wire);
            if (n) print_hex(wire, n);
            else printf("error");
        } else {
            long n = parse_hex(line, buf, sizeof buf);
            if (n < 0) {
                printf("error\n");
                continue;
            }
            if (!strcmp(mode, "decode")) {
                decode_stream(buf, (size_t)n);
            } else if (!strcmp(mode, "cobs-encode")) {
                print_hex(out, h2o_cobs_encode(buf, (size_t)n, out));
            } else if (!strcmp(mode, "cobs-decode")) {
                int m = h2o_cobs_decode(buf, (size_t)n, out, sizeof out);
                if (m < 0) printf("error");
                else print_hex(out, (size_t)m);
            } else if (!strcmp(mode, "crc")) {
                printf("%08" PRIx32, h2o_crc32(buf, (size_t)n));
            } else {
                fprintf(stderr, "codec_tool: unknown mode %s\n", mode);
                return 2;
            }
        }
        printf("\n");
    }
    free(line);
    return 0;
}
