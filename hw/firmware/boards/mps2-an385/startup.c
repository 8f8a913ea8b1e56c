/*
 * startup.c - mps2-an385 (Arm MPS2, Cortex-M3): vector table, reset, and the two library
 * functions a freestanding build needs (gcc may emit calls to them for struct copies).
 */
#include <stddef.h>
#include <stdint.h>

#include "../../bpet_board.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;

void Reset_Handler(void);
void SysTick_Handler(void); /* port.c: the millisecond clock */
static void Fault_Handler(void);

__attribute__((section(".vectors"), used)) static const void *const vectors[16] = {
    &__stack_top, (const void *)Reset_Handler, (const void *)Fault_Handler,
    (const void *)Fault_Handler, (const void *)Fault_Handler, (const void *)Fault_Handler,
    (const void *)Fault_Handler, 0, 0, 0, 0, 0, 0, 0, 0, (const void *)SysTick_Handler,
};

void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--) {
        *d++ = (uint8_t)c;
    }
    return dst;
}

void Reset_Handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start; dst < &__bss_end;) {
        *dst++ = 0u;
    }
    bpet_board_main();
    for (;;) {
    }
}

void port_exit(int code);

static void Fault_Handler(void)
{
    port_exit(2); /* a fault ends the emulated board with an error, never a hang */
}
