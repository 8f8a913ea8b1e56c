# mps2-an385: Arm's MPS2 board with a Cortex-M3 (QEMU: -machine mps2-an385).
CPU_FLAGS := -mcpu=cortex-m3 -mthumb
QEMU_MACHINE := mps2-an385
