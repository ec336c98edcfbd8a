/*
 * h2o_protocol.h - the serial frame codec between the robot computer and the motor firmware.
 *
 * Header-only, C99, no heap, no OS: include it in the firmware and in host tools alike.
 * The wire format is specified byte by byte in docs/protocol.md ("Serial protocol"); this file is
 * its reference implementation and is held byte-for-byte equal to protocol/frames.py by
 * tests/firmware_bridge/test_c_codec.py.
 *
 *   wire frame = COBS( version u8 | type u8 | seq u16 | length u16 | payload | crc32 u32 ) 0x00
 *
 * Why explicit byte packing (h2o_put_* / h2o_get_*) instead of casting structs onto buffers:
 * struct padding, alignment traps (Cortex-M0 faults on unaligned 32-bit loads) and the CPU's
 * byte order all differ between targets; shifting bytes is the same everywhere and costs little.
 *
 * Why a CRC table in flash: 1 KiB of const data, one table lookup per byte; a board with a
 * hardware CRC-32 unit may define H2O_CRC32_UPDATE(crc, data, n) before including this file
 * (same parameters as h2o_crc32_update below: running value without the final xor).
 */
#ifndef H2O_PROTOCOL_H
#define H2O_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------ constants */

#define H2O_FRAME_VERSION 1u
#define H2O_HEADER_SIZE 6u          /* version, type, seq (u16), length (u16) */
#define H2O_CRC_SIZE 4u
#define H2O_MIN_RAW_FRAME 10u       /* header + crc, empty payload */
#define H2O_MAX_RAW_FRAME 254u      /* keeps the COBS form to one block */
#define H2O_MAX_PAYLOAD 244u
#define H2O_MAX_ENCODED_FRAME 255u  /* COBS form without the delimiter */
#define H2O_MAX_WIRE_FRAME 256u     /* COBS form plus the 0x00 delimiter: size output buffers so */
#define H2O_N_ACTUATORS 6           /* 0 left_hip 1 left_knee 2 left_wheel 3 right_hip 4 right_knee 5 right_wheel */

/* Frame types (docs/protocol.md table 1.4). */
enum {
    H2O_COMMAND = 0x01,     /* host -> firmware, 120 bytes */
    H2O_STATE = 0x02,       /* firmware -> host, 125 bytes */
    H2O_ENABLE = 0x03,      /* host -> firmware, empty */
    H2O_DISABLE = 0x04,     /* host -> firmware, empty */
    H2O_ESTOP = 0x05,       /* host -> firmware, empty */
    H2O_ESTOP_CLEAR = 0x06, /* host -> firmware, empty */
    H2O_HEARTBEAT = 0x07,   /* both ways, 8 bytes */
    H2O_FAULT = 0x08,       /* firmware -> host, 16 bytes */
    H2O_N_FRAME_TYPES = 9   /* array size for per-type counters indexed by type code */
};

#define H2O_COMMAND_SIZE 120u
#define H2O_STATE_SIZE 125u
#define H2O_HEARTBEAT_SIZE 8u
#define H2O_FAULT_SIZE 16u

/* STATE.mode (MotorMode). */
enum { H2O_MODE_DISABLED = 0, H2O_MODE_ENABLED = 1, H2O_MODE_ESTOP = 2 };

/* STATE.faults / FAULT.faults bits (FaultFlags). */
#define H2O_FAULT_WATCHDOG (1u << 0)
#define H2O_FAULT_ESTOP_LATCHED (1u << 1)
#define H2O_FAULT_SENSOR_DROPOUT (1u << 2)
#define H2O_FAULT_MOTOR_STUCK (1u << 3)
#define H2O_FAULT_TORQUE_LIMITED (1u << 4)
#define H2O_FAULT_BAD_COMMAND (1u << 5)
/* Bits whose rise sends a FAULT frame; SENSOR_DROPOUT and TORQUE_LIMITED are per-tick conditions
 * that only show in STATE.faults. */
#define H2O_FAULTS_REPORTED \
    (H2O_FAULT_WATCHDOG | H2O_FAULT_ESTOP_LATCHED | H2O_FAULT_MOTOR_STUCK | H2O_FAULT_BAD_COMMAND)

/* Why a frame was dropped: index into h2o_decoder_t.dropped. H2O_FRAME_OK is not a drop. The
 * order is the order of the receiving checks (docs/protocol.md 1.7). */
enum {
    H2O_FRAME_OK = 0,
    H2O_DROP_OVERSIZED,
    H2O_DROP_COBS,
    H2O_DROP_SHORT,
    H2O_DROP_CRC,
    H2O_DROP_BAD_VERSION,
    H2O_DROP_UNKNOWN_TYPE,
    H2O_DROP_BAD_LENGTH,
    H2O_N_DROP_REASONS
};

/* Counter names as protocol/frames.py's FrameDecoder.dropped keys (index 0 unused). */
static const char *const h2o_drop_reason_names[H2O_N_DROP_REASONS] = {
    "ok", "oversized", "cobs", "short", "crc", "bad_version", "unknown_type", "bad_length"};

/* ------------------------------------------------------------------------------ payload types */

typedef struct {
    float q_des[H2O_N_ACTUATORS];  /* rad */
    float qd_des[H2O_N_ACTUATORS]; /* rad/s */
    float kp[H2O_N_ACTUATORS];     /* N·m/rad */
    float kd[H2O_N_ACTUATORS];     /* N·m·s/rad */
    float tau_ff[H2O_N_ACTUATORS]; /* N·m */
} h2o_command_t;

typedef struct {
    uint64_t t_us;                       /* firmware clock at sampling */
    float joint_pos[H2O_N_ACTUATORS];    /* rad, wheels accumulate */
    float joint_vel[H2O_N_ACTUATORS];    /* rad/s */
    float joint_torque[H2O_N_ACTUATORS]; /* N·m actually applied */
    float imu_quat[4];                   /* w, x, y, z */
    float imu_gyro[3];                   /* rad/s, base frame */
    float imu_acc[3];                    /* m/s^2 specific force, base frame */
    uint8_t mode;                        /* H2O_MODE_* */
    uint32_t faults;                     /* H2O_FAULT_* bits */
} h2o_state_t;

typedef struct {
    uint64_t t_us;   /* firmware clock */
    uint32_t faults; /* the bits that rose (not the whole set) */
    uint32_t detail; /* firmware-specific code; 0 if none */
} h2o_fault_report_t;

/* One decoded frame; `payload` points into the decoder's buffer (valid until the next byte). */
typedef struct {
    uint8_t type;
    uint16_t seq;
    uint16_t length;
    const uint8_t *payload;
} h2o_frame_t;

/* ------------------------------------------------------------------------------ byte order */

static inline void h2o_put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void h2o_put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void h2o_put_u64(uint8_t *p, uint64_t v) {
    h2o_put_u32(p, (uint32_t)v);
    h2o_put_u32(p + 4, (uint32_t)(v >> 32));
}
static inline uint16_t h2o_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t h2o_get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t h2o_get_u64(const uint8_t *p) {
    return (uint64_t)h2o_get_u32(p) | ((uint64_t)h2o_get_u32(p + 4) << 32);
}
/* Floats travel as their IEEE-754 binary32 bits (memcpy keeps NaN payloads bit for bit). */
static inline uint32_t h2o_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float h2o_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline void h2o_put_f32(uint8_t *p, float f) { h2o_put_u32(p, h2o_f32_bits(f)); }
static inline float h2o_get_f32(const uint8_t *p) { return h2o_f32_from_bits(h2o_get_u32(p)); }
/* Finite test on the bits (exponent not all ones): still correct under -ffast-math, where
 * isfinite() may be folded to 1. */
static inline int h2o_f32_is_finite(float f) { return (h2o_f32_bits(f) & 0x7F800000u) != 0x7F800000u; }

/* ------------------------------------------------------------------------------ CRC-32 */

/* CRC-32/ISO-HDLC (zlib): poly 0x04C11DB7 reflected (0xEDB88320), init and xorout 0xFFFFFFFF. */
static const uint32_t h2o_crc32_table[256] = {
    0x00000000u, 0x77073096u, 0xEE0E612Cu, 0x990951BAu, 0x076DC419u, 0x706AF48Fu,
    0xE963A535u, 0x9E6495A3u, 0x0EDB8832u, 0x79DCB8A4u, 0xE0D5E91Eu, 0x97D2D988u,
    0x09B64C2Bu, 0x7EB17CBDu, 0xE7B82D07u, 0x90BF1D91u, 0x1DB71064u, 0x6AB020F2u,
    0xF3B97148u, 0x84BE41DEu, 0x1ADAD47Du, 0x6DDDE4EBu, 0xF4D4B551u, 0x83D385C7u,
    0x136C9856u, 0x646BA8C0u, 0xFD62F97Au, 0x8A65C9ECu, 0x14015C4Fu, 0x63066CD9u,
    0xFA0F3D63u, 0x8D080DF5u, 0x3B6E20C8u, 0x4C69105Eu, 0xD56041E4u, 0xA2677172u,
    0x3C03E4D1u, 0x4B04D447u, 0xD20D85FDu, 0xA50AB56Bu, 0x35B5A8FAu, 0x42B2986Cu,
    0xDBBBC9D6u, 0xACBCF940u, 0x32D86CE3u, 0x45DF5C75u, 0xDCD60DCFu, 0xABD13D59u,
    0x26D930ACu, 0x51DE003Au, 0xC8D75180u, 0xBFD06116u, 0x21B4F4B5u, 0x56B3C423u,
    0xCFBA9599u, 0xB8BDA50Fu, 0x2802B89Eu, 0x5F058808u, 0xC60CD9B2u, 0xB10BE924u,
    0x2F6F7C87u, 0x58684C11u, 0xC1611DABu, 0xB6662D3Du, 0x76DC4190u, 0x01DB7106u,
    0x98D220BCu, 0xEFD5102Au, 0x71B18589u, 0x06B6B51Fu, 0x9FBFE4A5u, 0xE8B8D433u,
    0x7807C9A2u, 0x0F00F934u, 0x9609A88Eu, 0xE10E9818u, 0x7F6A0DBBu, 0x086D3D2Du,
    0x91646C97u, 0xE6635C01u, 0x6B6B51F4u, 0x1C6C6162u, 0x856530D8u, 0xF262004Eu,
    0x6C0695EDu, 0x1B01A57Bu, 0x8208F4C1u, 0xF50FC457u, 0x65B0D9C6u, 0x12B7E950u,
    0x8BBEB8EAu, 0xFCB9887Cu, 0x62DD1DDFu, 0x15DA2D49u, 0x8CD37CF3u, 0xFBD44C65u,
    0x4DB26158u, 0x3AB551CEu, 0xA3BC0074u, 0xD4BB30E2u, 0x4ADFA541u, 0x3DD895D7u,
    0xA4D1C46Du, 0xD3D6F4FBu, 0x4369E96Au, 0x346ED9FCu, 0xAD678846u, 0xDA60B8D0u,
    0x44042D73u, 0x33031DE5u, 0xAA0A4C5Fu, 0xDD0D7CC9u, 0x5005713Cu, 0x270241AAu,
    0xBE0B1010u, 0xC90C2086u, 0x5768B525u, 0x206F85B3u, 0xB966D409u, 0xCE61E49Fu,
    0x5EDEF90Eu, 0x29D9C998u, 0xB0D09822u, 0xC7D7A8B4u, 0x59B33D17u, 0x2EB40D81u,
    0xB7BD5C3Bu, 0xC0BA6CADu, 0xEDB88320u, 0x9ABFB3B6u, 0x03B6E20Cu, 0x74B1D29Au,
    0xEAD54739u, 0x9DD277AFu, 0x04DB2615u, 0x73DC1683u, 0xE3630B12u, 0x94643B84u,
    0x0D6D6A3Eu, 0x7A6A5AA8u, 0xE40ECF0Bu, 0x9309FF9Du, 0x0A00AE27u, 0x7D079EB1u,
    0xF00F9344u, 0x8708A3D2u, 0x1E01F268u, 0x6906C2FEu, 0xF762575Du, 0x806567CBu,
    0x196C3671u, 0x6E6B06E7u, 0xFED41B76u, 0x89D32BE0u, 0x10DA7A5Au, 0x67DD4ACCu,
    0xF9B9DF6Fu, 0x8EBEEFF9u, 0x17B7BE43u, 0x60B08ED5u, 0xD6D6A3E8u, 0xA1D1937Eu,
    0x38D8C2C4u, 0x4FDFF252u, 0xD1BB67F1u, 0xA6BC5767u, 0x3FB506DDu, 0x48B2364Bu,
    0xD80D2BDAu, 0xAF0A1B4Cu, 0x36034AF6u, 0x41047A60u, 0xDF60EFC3u, 0xA867DF55u,
    0x316E8EEFu, 0x4669BE79u, 0xCB61B38Cu, 0xBC66831Au, 0x256FD2A0u, 0x5268E236u,
    0xCC0C7795u, 0xBB0B4703u, 0x220216B9u, 0x5505262Fu, 0xC5BA3BBEu, 0xB2BD0B28u,
    0x2BB45A92u, 0x5CB36A04u, 0xC2D7FFA7u, 0xB5D0CF31u, 0x2CD99E8Bu, 0x5BDEAE1Du,
    0x9B64C2B0u, 0xEC63F226u, 0x756AA39Cu, 0x026D930Au, 0x9C0906A9u, 0xEB0E363Fu,
    0x72076785u, 0x05005713u, 0x95BF4A82u, 0xE2B87A14u, 0x7BB12BAEu, 0x0CB61B38u,
    0x92D28E9Bu, 0xE5D5BE0Du, 0x7CDCEFB7u, 0x0BDBDF21u, 0x86D3D2D4u, 0xF1D4E242u,
    0x68DDB3F8u, 0x1FDA836Eu, 0x81BE16CDu, 0xF6B9265Bu, 0x6FB077E1u, 0x18B74777u,
    0x88085AE6u, 0xFF0F6A70u, 0x66063BCAu, 0x11010B5Cu, 0x8F659EFFu, 0xF862AE69u,
    0x616BFFD3u, 0x166CCF45u, 0xA00AE278u, 0xD70DD2EEu, 0x4E048354u, 0x3903B3C2u,
    0xA7672661u, 0xD06016F7u, 0x4969474Du, 0x3E6E77DBu, 0xAED16A4Au, 0xD9D65ADCu,
    0x40DF0B66u, 0x37D83BF0u, 0xA9BCAE53u, 0xDEBB9EC5u, 0x47B2CF7Fu, 0x30B5FFE9u,
    0xBDBDF21Cu, 0xCABAC28Au, 0x53B39330u, 0x24B4A3A6u, 0xBAD03605u, 0xCDD70693u,
    0x54DE5729u, 0x23D967BFu, 0xB3667A2Eu, 0xC4614AB8u, 0x5D681B02u, 0x2A6F2B94u,
    0xB40BBE37u, 0xC30C8EA1u, 0x5A05DF1Bu, 0x2D02EF8Du,
};

#ifndef H2O_CRC32_UPDATE
/* Running CRC without the final xor: start with 0xFFFFFFFF, xor the result with 0xFFFFFFFF. */
static inline uint32_t h2o_crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
    while (n--) crc = h2o_crc32_table[(crc ^ *p++) & 0xFFu] ^ (crc >> 8);
    return crc;
}
#define H2O_CRC32_UPDATE(crc, p, n) h2o_crc32_update((crc), (p), (n))
#endif

/* CRC-32 of n bytes; h2o_crc32("123456789", 9) == 0xCBF43926. */
static inline uint32_t h2o_crc32(const uint8_t *p, size_t n) { return H2O_CRC32_UPDATE(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu; }

/* ------------------------------------------------------------------------------ COBS */

/* Encode n bytes into out (room for n + 1 + n / 254 bytes); returns the encoded length. The
 * output has no 0x00. Each run of non-zero bytes ("piece") becomes a code byte (piece length + 1)
 * and the piece; a piece of 254 or more bytes is cut into 0xFF blocks of 254 bytes that imply no
 * zero. Data ending in 0x00 ends with an empty block (code 0x01); data whose last piece ends
 * exactly on a full 0xFF block gets no trailing empty block (as protocol/cobs.py). */
static inline size_t h2o_cobs_encode(const uint8_t *in, size_t n, uint8_t *out) {
    size_t o = 1, code_at = 0, i;
    uint8_t code = 1;
    int after_full = 0;
    for (i = 0; i < n; i++) {
        after_full = 0;
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
            continue;
        }
        out[o++] = in[i];
        if (++code == 0xFF) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
            after_full = 1;
        }
    }
    if (after_full) return o - 1; /* the block opened after a full one stays unwritten */
    out[code_at] = code;
    return o;
}

/* Decode one COBS frame (delimiter removed) into out; returns the decoded length or -1 when the
 * input holds a 0x00, a block runs past the end, or the output would exceed out_cap. */
static inline int h2o_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t out_cap) {
    size_t i = 0, o = 0, k;
    while (i < n) {
        uint8_t code = in[i];
        if (code == 0 || i + code > n) return -1;
        for (k = i + 1; k < i + code; k++) {
            if (in[k] == 0 || o >= out_cap) return -1;
            out[o++] = in[k];
        }
        i += code;
        if (code != 0xFF && i < n) {
            if (o >= out_cap) return -1;
            out[o++] = 0;
        }
    }
    return (int)o;
}

/* ------------------------------------------------------------------------------ frames */

/* Fixed payload size of a frame type, or -1 for an unknown type. */
static inline int h2o_payload_size(uint8_t type) {
    switch (type) {
    case H2O_COMMAND: return (int)H2O_COMMAND_SIZE;
    case H2O_STATE: return (int)H2O_STATE_SIZE;
    case H2O_ENABLE:
    case H2O_DISABLE:
    case H2O_ESTOP:
    case H2O_ESTOP_CLEAR: return 0;
    case H2O_HEARTBEAT: return (int)H2O_HEARTBEAT_SIZE;
    case H2O_FAULT: return (int)H2O_FAULT_SIZE;
    default: return -1;
    }
}

/* Build one wire frame (COBS form and the 0x00 delimiter) in out[H2O_MAX_WIRE_FRAME]. Returns
 * the number of bytes to send, or 0 when the type is unknown or len is not its payload size. */
static inline size_t h2o_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, size_t len,
                                      uint8_t out[H2O_MAX_WIRE_FRAME]) {
    uint8_t raw[H2O_MAX_RAW_FRAME];
    size_t n;
    int expected = h2o_payload_size(type);
    if (expected < 0 || (size_t)expected != len) return 0;
    raw[0] = (uint8_t)H2O_FRAME_VERSION;
    raw[1] = type;
    h2o_put_u16(raw + 2, seq);
    h2o_put_u16(raw + 4, (uint16_t)len);
    if (len) memcpy(raw + H2O_HEADER_SIZE, payload, len);
    h2o_put_u32(raw + H2O_HEADER_SIZE + len, h2o_crc32(raw, H2O_HEADER_SIZE + len));
    n = h2o_cobs_encode(raw, H2O_HEADER_SIZE + len + H2O_CRC_SIZE, out);
    out[n] = 0x00;
    return n + 1;
}

/* Check and decode one COBS frame (delimiter removed), n <= any. raw[H2O_MAX_RAW_FRAME] holds the
 * decoded bytes; f->payload points into it. Returns H2O_FRAME_OK or the H2O_DROP_* reason, checked
 * in the order of docs/protocol.md 1.7. */
static inline int h2o_frame_decode(const uint8_t *enc, size_t n, uint8_t raw[H2O_MAX_RAW_FRAME], h2o_frame_t *f) {
    int len, expected;
    uint16_t length;
    if (n > H2O_MAX_ENCODED_FRAME) return H2O_DROP_OVERSIZED;
    len = h2o_cobs_decode(enc, n, raw, H2O_MAX_RAW_FRAME);
    if (len < 0) return H2O_DROP_COBS;
    if ((size_t)len < H2O_MIN_RAW_FRAME) return H2O_DROP_SHORT;
    if (h2o_crc32(raw, (size_t)len - H2O_CRC_SIZE) != h2o_get_u32(raw + len - H2O_CRC_SIZE)) return H2O_DROP_CRC;
    if (raw[0] != H2O_FRAME_VERSION) return H2O_DROP_BAD_VERSION;
    expected = h2o_payload_size(raw[1]);
    if (expected < 0) return H2O_DROP_UNKNOWN_TYPE;
    length = h2o_get_u16(raw + 4);
    if ((int)length != len - (int)(H2O_HEADER_SIZE + H2O_CRC_SIZE) || (int)length != expected) return H2O_DROP_BAD_LENGTH;
    f->type = raw[1];
    f->seq = h2o_get_u16(raw + 2);
    f->length = length;
    f->payload = raw + H2O_HEADER_SIZE;
    return H2O_FRAME_OK;
}

/* ------------------------------------------------------------------------------ stream decoder */

/* Byte-at-a-time receiver: call h2o_decoder_push for each byte from the UART (any chunking).
 * Memory: 509 bytes of buffers plus counters; it never needs more. */
typedef struct {
    uint8_t buf[H2O_MAX_ENCODED_FRAME]; /* bytes since the last delimiter */
    uint8_t raw[H2O_MAX_RAW_FRAME];     /* the decoded frame the last h2o_frame_t points into */
    uint16_t len;
    uint8_t discarding;                 /* inside an oversized run: skip up to the next 0x00 */
    uint32_t frames_ok;
    uint32_t bytes_in;
    uint32_t dropped[H2O_N_DROP_REASONS]; /* by H2O_DROP_* reason; [0] unused */
} h2o_decoder_t;

static inline void h2o_decoder_init(h2o_decoder_t *d) { memset(d, 0, sizeof *d); }

/* Forget a partial frame (e.g. after a UART error); counters are kept. */
static inline void h2o_decoder_reset(h2o_decoder_t *d) {
    d->len = 0;
    d->discarding = 0;
}

/* Feed one byte. Returns 1 when it completed a good frame (then *f is set, valid until the next
 * push), else 0. Bad frames are counted in d->dropped; empty frames (0x00 0x00) are ignored. A run
 * of more than 255 bytes without a delimiter counts one H2O_DROP_OVERSIZED (at its 256th byte)
 * and is discarded up to the next 0x00. */
static inline int h2o_decoder_push(h2o_decoder_t *d, uint8_t byte, h2o_frame_t *f) {
    int reason;
    d->bytes_in++;
    if (byte != 0) {
        if (d->discarding) return 0;
        if (d->len == H2O_MAX_ENCODED_FRAME) {
            d->dropped[H2O_DROP_OVERSIZED]++;
            d->discarding = 1;
            d->len = 0;
            return 0;
        }
        d->buf[d->len++] = byte;
        return 0;
    }
    if (d->discarding) {
        d->discarding = 0;
        return 0;
    }
    if (d->len == 0) return 0;
    reason = h2o_frame_decode(d->buf, d->len, d->raw, f);
    d->len = 0;
    if (reason != H2O_FRAME_OK) {
        d->dropped[reason]++;
        return 0;
    }
    d->frames_ok++;
    return 1;
}

static inline uint32_t h2o_decoder_dropped_total(const h2o_decoder_t *d) {
    uint32_t total = 0;
    int i;
    for (i = 1; i < H2O_N_DROP_REASONS; i++) total += d->dropped[i];
    return total;
}

/* ------------------------------------------------------------------------------ sequence numbers */

/* Frames lost between consecutive seqs of one sender (mod 2^16); a repeated or backwards seq
 * (more than half the range back) counts as a sender restart, as protocol.frames.SeqTracker. */
typedef struct {
    uint16_t last;
    uint8_t have_last;
    uint32_t lost;
    uint32_t resets;
} h2o_seq_tracker_t;

static inline uint16_t h2o_seq_update(h2o_seq_tracker_t *t, uint16_t seq) {
    uint16_t gap;
    if (!t->have_last) {
        t->have_last = 1;
        t->last = seq;
        return 0;
    }
    gap = (uint16_t)(seq - t->last);
    t->last = seq;
    if (gap == 0 || gap > 0x8000u) {
        t->resets++;
        return 0;
    }
    t->lost += (uint32_t)(gap - 1u);
    return (uint16_t)(gap - 1u);
}

/* ------------------------------------------------------------------------------ payloads */

static inline void h2o_put_f32s(uint8_t *p, const float *v, int n) {
    int i;
    for (i = 0; i < n; i++) h2o_put_f32(p + 4 * i, v[i]);
}
static inline void h2o_get_f32s(const uint8_t *p, float *v, int n) {
    int i;
    for (i = 0; i < n; i++) v[i] = h2o_get_f32(p + 4 * i);
}

/* STATE: 0 t_us u64 | 8 joint_pos | 32 joint_vel | 56 joint_torque | 80 imu_quat | 96 imu_gyro |
 * 108 imu_acc | 120 mode u8 | 121 faults u32 (no padding). */
static inline void h2o_pack_state(const h2o_state_t *s, uint8_t out[H2O_STATE_SIZE]) {
    h2o_put_u64(out, s->t_us);
    h2o_put_f32s(out + 8, s->joint_pos, H2O_N_ACTUATORS);
    h2o_put_f32s(out + 32, s->joint_vel, H2O_N_ACTUATORS);
    h2o_put_f32s(out + 56, s->joint_torque, H2O_N_ACTUATORS);
    h2o_put_f32s(out + 80, s->imu_quat, 4);
    h2o_put_f32s(out + 96, s->imu_gyro, 3);
    h2o_put_f32s(out + 108, s->imu_acc, 3);
    out[120] = s->mode;
    h2o_put_u32(out + 121, s->faults);
}
static inline void h2o_unpack_state(const uint8_t in[H2O_STATE_SIZE], h2o_state_t *s) {
    s->t_us = h2o_get_u64(in);
    h2o_get_f32s(in + 8, s->joint_pos, H2O_N_ACTUATORS);
    h2o_get_f32s(in + 32, s->joint_vel, H2O_N_ACTUATORS);
    h2o_get_f32s(in + 56, s->joint_torque, H2O_N_ACTUATORS);
    h2o_get_f32s(in + 80, s->imu_quat, 4);
    h2o_get_f32s(in + 96, s->imu_gyro, 3);
    h2o_get_f32s(in + 108, s->imu_acc, 3);
    s->mode = in[120];
    s->faults = h2o_get_u32(in + 121);
}

/* COMMAND: q_des, qd_des, kp, kd, tau_ff; 6 float32 each, at offsets 0, 24, 48, 72, 96. */
static inline void h2o_pack_command(const h2o_command_t *c, uint8_t out[H2O_COMMAND_SIZE]) {
    h2o_put_f32s(out, c->q_des, H2O_N_ACTUATORS);
    h2o_put_f32s(out + 24, c->qd_des, H2O_N_ACTUATORS);
    h2o_put_f32s(out + 48, c->kp, H2O_N_ACTUATORS);
    h2o_put_f32s(out + 72, c->kd, H2O_N_ACTUATORS);
    h2o_put_f32s(out + 96, c->tau_ff, H2O_N_ACTUATORS);
}
static inline void h2o_unpack_command(const uint8_t in[H2O_COMMAND_SIZE], h2o_command_t *c) {
    h2o_get_f32s(in, c->q_des, H2O_N_ACTUATORS);
    h2o_get_f32s(in + 24, c->qd_des, H2O_N_ACTUATORS);
    h2o_get_f32s(in + 48, c->kp, H2O_N_ACTUATORS);
    h2o_get_f32s(in + 72, c->kd, H2O_N_ACTUATORS);
    h2o_get_f32s(in + 96, c->tau_ff, H2O_N_ACTUATORS);
}

/* FAULT: 0 t_us u64 | 8 faults u32 | 12 detail u32. */
static inline void h2o_pack_fault(const h2o_fault_report_t *r, uint8_t out[H2O_FAULT_SIZE]) {
    h2o_put_u64(out, r->t_us);
    h2o_put_u32(out + 8, r->faults);
    h2o_put_u32(out + 12, r->detail);
}
static inline void h2o_unpack_fault(const uint8_t in[H2O_FAULT_SIZE], h2o_fault_report_t *r) {
    r->t_us = h2o_get_u64(in);
    r->faults = h2o_get_u32(in + 8);
    r->detail = h2o_get_u32(in + 12);
}

/* ------------------------------------------------------------------------------ whole frames */

static inline size_t h2o_encode_state(const h2o_state_t *s, uint16_t seq, uint8_t out[H2O_MAX_WIRE_FRAME]) {
    uint8_t p[H2O_STATE_SIZE];
    h2o_pack_state(s, p);
    return h2o_frame_encode(H2O_STATE, seq, p, sizeof p, out);
}
static inline size_t h2o_encode_command(const h2o_command_t *c, uint16_t seq, uint8_t out[H2O_MAX_WIRE_FRAME]) {
    uint8_t p[H2O_COMMAND_SIZE];
    h2o_pack_command(c, p);
    return h2o_frame_encode(H2O_COMMAND, seq, p, sizeof p, out);
}
static inline size_t h2o_encode_fault(const h2o_fault_report_t *r, uint16_t seq, uint8_t out[H2O_MAX_WIRE_FRAME]) {
    uint8_t p[H2O_FAULT_SIZE];
    h2o_pack_fault(r, p);
    return h2o_frame_encode(H2O_FAULT, seq, p, sizeof p, out);
}
static inline size_t h2o_encode_heartbeat(uint64_t t_us, uint16_t seq, uint8_t out[H2O_MAX_WIRE_FRAME]) {
    uint8_t p[H2O_HEARTBEAT_SIZE];
    h2o_put_u64(p, t_us);
    return h2o_frame_encode(H2O_HEARTBEAT, seq, p, sizeof p, out);
}
/* ENABLE, DISABLE, ESTOP, ESTOP_CLEAR (empty payload); 0 for any other type. */
static inline size_t h2o_encode_control(uint8_t type, uint16_t seq, uint8_t out[H2O_MAX_WIRE_FRAME]) {
    if (h2o_payload_size(type) != 0) return 0;
    return h2o_frame_encode(type, seq, NULL, 0, out);
}

#ifdef __cplusplus
}
#endif

#endif /* H2O_PROTOCOL_H */
