/*
 * bpet_wire.h - bedside-pet digitizer wire protocol, version 2: the frame packer.
 *
 * Portable C99 for the digitizer's microcontroller: no allocation, no floating point, no
 * library calls, fixed-size buffers, stdint types only. The byte layout is specified in
 * hw/WIRE.md; this packer and the host's hw.wire.encode produce identical bytes (the test
 * suite checks both against each other and against golden vectors).
 *
 * Every packer writes ONE complete frame into out[0..out_cap): a 0x00 delimiter, the COBS
 * encoding of header + payload + CRC-32 and a 0x00 delimiter, and returns the number of bytes
 * written (delimiters included), or 0 when an argument is out of range or out_cap is smaller
 * than BPET_FRAME_BYTES_MAX(n_words) (the worst case; size buffers BPET_MAX_FRAME_BYTES).
 */
#ifndef BPET_WIRE_H
#define BPET_WIRE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BPET_WIRE_VERSION 2u

/* Frame types (byte 1). */
#define BPET_FRAME_EVENTS 1u
#define BPET_FRAME_STATUS 2u
#define BPET_FRAME_RUN_START 3u
#define BPET_FRAME_RUN_STOP 4u
#define BPET_FRAME_COMMAND 5u /* host -> board */
#define BPET_FRAME_REPLY 6u   /* board -> host */

/* COMMAND opcodes (word 0, bits 0-7). */
#define BPET_CMD_PING 1u
#define BPET_CMD_START 2u     /* a = run number */
#define BPET_CMD_STOP 3u
#define BPET_CMD_MASK 4u      /* a = first channel (a multiple of 64), b = their enable bits */
#define BPET_CMD_THRESHOLD 5u /* a = channel (0xFFFFFFFF: every channel), b = lowest ADC code */
#define BPET_CMD_RESET 6u     /* events sent, FIFO overflows and rejected commands to 0 */
#define BPET_CMD_UPTIME 7u    /* the reply's value: milliseconds since power-up (mod 2**32) */

/* REPLY results (word 0, bits 8-15). */
#define BPET_OK 0u
#define BPET_BAD_FRAME 1u   /* not an intact COMMAND frame (COBS, length, version, type, CRC) */
#define BPET_UNKNOWN 2u     /* unknown opcode */
#define BPET_WRONG_STATE 3u /* start while running, stop while stopped */
#define BPET_BAD_ARGUMENT 4u

#define BPET_EVENTS_PER_FRAME 256u
#define BPET_HEADER_BYTES 12u
#define BPET_CRC_BYTES 4u
#define BPET_MAX_CHANNEL 4095u
#define BPET_MAX_ADC 4095u

/* Bytes before COBS of a frame with n_words payload words. */
#define BPET_RAW_FRAME_BYTES(n_words) (BPET_HEADER_BYTES + 8u * (n_words) + BPET_CRC_BYTES)
/* Worst-case bytes on the wire (COBS overhead and both delimiters included). */
#define BPET_FRAME_BYTES_MAX(n_words) \
    (BPET_RAW_FRAME_BYTES(n_words) + 1u + BPET_RAW_FRAME_BYTES(n_words) / 254u + 2u)
/* Largest frame on the wire: 2075 bytes. */
#define BPET_MAX_FRAME_BYTES BPET_FRAME_BYTES_MAX(BPET_EVENTS_PER_FRAME)

/* One detected photon as the digitizer latches it. */
typedef struct {
    uint32_t coarse;  /* coarse clock counter (low counter_bits bits, free-running, wraps) */
    uint16_t channel; /* board-local channel, 0..4095 */
    uint16_t adc;     /* ADC code, 0..4095 */
    uint8_t fine;     /* fine TDC value, in the low tdc_bits bits */
} bpet_event_t;

/* EVENTS frame of ev[0..n), 1 <= n <= 256 (n == 0 also allowed: an empty frame). */
size_t bpet_pack_events(const bpet_event_t *ev, uint16_t n, uint16_t board, uint32_t seq,
                        uint8_t *out, size_t out_cap);

/* STATUS heartbeat: current coarse counter, events sent and FIFO overflows (both mod 2**32),
 * board flags. Send one at least every half counter wrap (see WIRE.md). */
size_t bpet_pack_status(uint16_t board, uint32_t seq, uint32_t coarse, uint32_t events_sent,
                        uint32_t fifo_overflows, uint32_t flags, uint8_t *out, size_t out_cap);

/* RUN_START or RUN_STOP marker (type) with the coarse counter at the marker and the run number. */
size_t bpet_pack_marker(uint8_t type, uint16_t board, uint32_t seq, uint32_t coarse,
                        uint32_t run, uint8_t *out, size_t out_cap);

/* A two-word control frame (STATUS, markers, COMMAND, REPLY) as its fields. */
typedef struct {
    uint8_t type;
    uint16_t board;
    uint32_t seq;
    uint32_t w0_lo, w0_hi, w1_lo, w1_hi;
} bpet_control_t;

/* COMMAND to board (0xFFFF: any board) with opcode and arguments a, b. */
size_t bpet_pack_command(uint16_t board, uint32_t seq, uint8_t opcode, uint32_t a, uint64_t b,
                         uint8_t *out, size_t out_cap);

/* REPLY to the command cmd_seq with opcode: result, value (PING: the firmware version) and the
 * commands rejected since power-up or the last RESET. */
size_t bpet_pack_reply(uint16_t board, uint32_t seq, uint8_t opcode, uint8_t result,
                       uint32_t cmd_seq, uint32_t value, uint32_t rejected, uint8_t *out,
                       size_t out_cap);

/* Decode chunk[0..len) (one frame's bytes between two 0x00, delimiters excluded) as a two-word
 * control frame of version 2: 1 and *f filled if it is intact, else 0. */
int bpet_unpack_control(const uint8_t *chunk, size_t len, bpet_control_t *f);

/* CRC-32 (IEEE 802.3 / zlib) of buf[0..len) continued from crc (0 to start). */
uint32_t bpet_crc32(uint32_t crc, const uint8_t *buf, size_t len);

/* sizeof(bpet_event_t), for hosts that bind this library (ABI check). */
size_t bpet_event_size(void);

#ifdef __cplusplus
}
#endif

#endif /* BPET_WIRE_H */
