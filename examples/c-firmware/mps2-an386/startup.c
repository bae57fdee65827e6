/* Reset, exceptions and semihosting for QEMU's mps2-an386 (Cortex-M4F): no vendor SDK needed. */
#include <stdint.h>
#include <string.h>

extern uint32_t __data_start, __data_end, __data_load, __bss_start, __bss_end, __stack_top;
int main(void);
void semihosting_exit(int code);

/* Semihosting call `op` with argument block `arg` (QEMU: -semihosting-config enable=on). */
static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void semihosting_write(const char *s) { semihost(0x04 /* SYS_WRITE0 */, s); }

void semihosting_exit(int code) {
    uint32_t block[2] = {0x20026 /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
    semihost(0x20 /* SYS_EXIT_EXTENDED */, block);
    for (;;) {}
}

void reset_handler(void) {
    /* Full access to the FPU (CP10, CP11) before any float instruction. */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm__ volatile("dsb\n isb");
    memcpy(&__data_start, &__data_load, (size_t)((char *)&__data_end - (char *)&__data_start));
    memset(&__bss_start, 0, (size_t)((char *)&__bss_end - (char *)&__bss_start));
    semihosting_exit(main());
}

static void fault_handler(void) {
    semihosting_write("error: fault (HardFault or unexpected exception)\n");
    semihosting_exit(3);
}

__attribute__((section(".vector_table"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))&__stack_top, reset_handler, fault_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler, fault_handler,
};
