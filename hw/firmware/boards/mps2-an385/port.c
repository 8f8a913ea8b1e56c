/*
 * port.c - bpet_port.h on mps2-an385 as QEMU emulates it: the CMSDK UART0 (polled), SysTick's
 * interrupt as the millisecond clock, and semihosting for the front end (reads of the file the
 * emulator appends the front end's words to) and for the exit.
 */
#include "../../bpet_port.h"

#define UART0 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0 + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(UART0 + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(UART0 + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0 + 0x10u))
#define STATE_TXFULL 1u
#define STATE_RXFULL 2u

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYSCLK_HZ 25000000u

#define SYS_OPEN 0x01
#define SYS_READ 0x06
#define SYS_GET_CMDLINE 0x15
#define SYS_EXIT 0x18
#define APPLICATION_EXIT 0x20026
#define RUNTIME_ERROR 0x20023

static int input_handle = -1;
static volatile uint32_t millis;
static uint16_t board_id;

static int semihost(int op, void *arg)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static uint16_t parse_board(void)
{
    char line[64];
    int args[2] = {(int)(uintptr_t)line, (int)sizeof line};
    unsigned value = 0u, i;
    if (semihost(SYS_GET_CMDLINE, args) != 0) {
        return 0u;
    }
    for (i = 0u; i < sizeof line && line[i] != 0; ++i) { /* the last number on the line */
        value = (line[i] >= '0' && line[i] <= '9') ? value * 10u + (unsigned)(line[i] - '0')
                                                   : 0u;
    }
    return (uint16_t)value;
}

void port_init(void)
{
    static const char name[] = "frontend.bin";
    int args[3] = {(int)(uintptr_t)name, 1 /* "rb" */, (int)sizeof name - 1};
    UART_BAUDDIV = 16u;
    UART_CTRL = 3u; /* TX and RX enabled, no interrupts */
    SYST_RVR = SYSCLK_HZ / 1000u - 1u;
    SYST_CVR = 0u;
    SYST_CSR = 7u; /* processor clock, interrupt, enabled */
    input_handle = semihost(SYS_OPEN, args);
    if (input_handle < 0) {
        port_exit(3);
    }
    board_id = parse_board();
}

uint16_t port_board_id(void)
{
    return board_id;
}

unsigned port_input_bytes(uint8_t *buf, unsigned max_bytes)
{
    int args[3] = {input_handle, (int)(uintptr_t)buf, (int)max_bytes};
    int not_read = semihost(SYS_READ, args); /* SYS_READ answers the bytes it did not read */
    return not_read >= 0 && (unsigned)not_read <= max_bytes ? max_bytes - (unsigned)not_read
                                                            : 0u;
}

int port_uart_tx_ready(void)
{
    return !(UART_STATE & STATE_TXFULL);
}

void port_uart_tx(uint8_t byte)
{
    UART_DATA = byte;
}

int port_uart_rx(uint8_t *byte)
{
    if (!(UART_STATE & STATE_RXFULL)) {
        return 0;
    }
    *byte = (uint8_t)UART_DATA;
    return 1;
}

void SysTick_Handler(void)
{
    millis++;
}

uint32_t port_millis(void)
{
    return millis;
}

void port_exit(int code)
{
    semihost(SYS_EXIT, (void *)(uintptr_t)(code == 0 ? APPLICATION_EXIT : RUNTIME_ERROR));
    for (;;) {
    }
}
