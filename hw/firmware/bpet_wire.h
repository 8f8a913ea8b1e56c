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

/* CRC-32 (IEEE 802.3 / zlib) of buf[0..len) continued from crc (0 to start). */
uint32_t bpet_crc32(uint32_t crc, const uint8_t *buf, size_t len);

/* sizeof(bpet_event_t), for hosts that bind this library (ABI check). */
size_t bpet_event_size(void);

#ifdef __cplusplus
}
#endif

#endif /* BPET_WIRE_H */
