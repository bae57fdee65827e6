/* A QEMU TCG plugin that counts the guest instructions a program executes and prints "insns: N" at exit.
 *
 * Plugin API version 1 (QEMU 7.2, Debian 12); Debian's QEMU ships no qemu-plugin.h, so the entry points used are
 * declared in qemu-plugin-v1.h beside this file. The count is exact for a program that runs
 * to completion: every translated block adds its instruction count each time it executes (inline, no callback).
 *
 *   gcc -shared -fPIC -O2 -o libinsncount.so benches/pi/insncount.c
 *   qemu-aarch64 -plugin ./libinsncount.so -d plugin -L SYSROOT PROGRAM ARGS...
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qemu-plugin-v1.h"

/* Single-threaded guests only (the benchmarks run one thread): a plain inline add. */
static uint64_t executed;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_exit_report(qemu_plugin_id_t id, void *userdata) {
    char line[64];
    (void)id;
    (void)userdata;
    snprintf(line, sizeof line, "insns: %" PRIu64 "\n", executed);
    qemu_plugin_outs(line);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const void *info, int argc,
                                                               char **argv) {
    (void)info;
    (void)argc;
    (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_report, NULL);
    return 0;
}
