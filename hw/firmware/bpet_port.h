/*
 * bpet_port.h - what the board firmware (bpet_board.c) needs of its board: the front end's event
 * input, a UART, a millisecond clock and an exit. boards/<board>/port.c implements it; nothing
 * else in the firmware touches hardware.
 */
#ifndef BPET_PORT_H
#define BPET_PORT_H

#include <stddef.h>
#include <stdint.h>

/* One word of the front end's event FIFO (the FPGA's, or the emulator's stream): 12 bytes,
 * little-endian. kind BPET_IN_EVENT is a photon; BPET_IN_TICK ends a readout period at coarse
 * (the firmware closes its frame and sends a STATUS heartbeat); BPET_IN_CLOCK sets the board's
 * clock (no output); BPET_IN_END: the front end has nothing more, ever (an emulated board's
 * input ends; the firmware exits once its run is stopped). */
typedef struct {
    uint32_t coarse;
    uint16_t channel;
    uint16_t adc;
    uint8_t fine;
    uint8_t kind;
    uint16_t reserved;
} bpet_input_t;

#define BPET_IN_EVENT 0u
#define BPET_IN_TICK 1u
#define BPET_IN_CLOCK 2u
#define BPET_IN_END 3u
#define BPET_INPUT_BYTES 12u

void port_init(void);
/* Up to max_bytes of the front end's stream into buf; returns the bytes read (0: none ready
 * now). A word may come in pieces: the firmware assembles them. */
unsigned port_input_bytes(uint8_t *buf, unsigned max_bytes);
/* The board id the board was given (jumpers, a configuration word, the emulator's argument). */
uint16_t port_board_id(void);
/* 1 if the UART takes a byte now. */
int port_uart_tx_ready(void);
void port_uart_tx(uint8_t byte);
/* 1 and *byte if the UART received one. */
int port_uart_rx(uint8_t *byte);
/* Milliseconds since power-up (wraps). */
uint32_t port_millis(void);
/* End the program (an emulated board: the emulator exits with code). */
void port_exit(int code);

#endif /* BPET_PORT_H */
