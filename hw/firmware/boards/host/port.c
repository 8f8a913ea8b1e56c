/*
 * port.c - bpet_port.h on a POSIX host: the front end is the file frontend.bin (appended to by
 * the emulator), the UART is stdin/stdout (non-blocking), the clock is CLOCK_MONOTONIC. The
 * firmware's logic runs here unchanged, for tests without an emulated microcontroller.
 */
#define _POSIX_C_SOURCE 200809L
#include "../../bpet_port.h"
#include "../../bpet_board.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int input_fd = -1;
static uint16_t board_id;
static uint8_t tx_buf[4096];
static unsigned tx_bytes;

void port_init(void)
{
    input_fd = open("frontend.bin", O_RDONLY);
    if (input_fd < 0) {
        port_exit(3);
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
}

uint16_t port_board_id(void)
{
    return board_id;
}

unsigned port_input_bytes(uint8_t *buf, unsigned max_bytes)
{
    ssize_t got = read(input_fd, buf, max_bytes);
    return got > 0 ? (unsigned)got : 0u;
}

static void flush_tx(void)
{
    unsigned done = 0u;
    while (done < tx_bytes) {
        ssize_t n = write(1, tx_buf + done, tx_bytes - done);
        if (n <= 0) {
            port_exit(4);
        }
        done += (unsigned)n;
    }
    tx_bytes = 0u;
}

int port_uart_tx_ready(void)
{
    return 1;
}

void port_uart_tx(uint8_t byte)
{
    tx_buf[tx_bytes++] = byte;
    if (tx_bytes == sizeof tx_buf) {
        flush_tx();
    }
}

int port_uart_rx(uint8_t *byte)
{
    flush_tx(); /* a host waits for what was sent before it commands again */
    return read(0, byte, 1) == 1;
}

uint32_t port_millis(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(ts.tv_sec * 1000u + ts.tv_nsec / 1000000);
}

void port_exit(int code)
{
    flush_tx();
    exit(code);
}

int main(int argc, char **argv)
{
    board_id = argc > 1 ? (uint16_t)atoi(argv[1]) : 0u;
    return bpet_board_main();
}
