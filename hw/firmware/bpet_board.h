/*
 * bpet_board.h - the digitizer board's firmware: front-end events -> FIFO -> wire frames on the
 * UART, heartbeats and run markers on the board's event clock, commands from the host.
 */
#ifndef BPET_BOARD_H
#define BPET_BOARD_H

#include <stdint.h>

#define BPET_FIRMWARE_VERSION 0x010000u /* major << 16 | minor << 8 | patch: 1.0.0 */
/* Event words the FIFO holds; and how long the UART may refuse bytes before the front end is
 * read regardless (events that then find the FIFO full are dropped and counted). */
#define BPET_FIFO_WORDS 4096u
#define BPET_STALL_MS 500u

/* Run the board until the host stops its run after the end of its input. */
int bpet_board_main(void);

#endif /* BPET_BOARD_H */
