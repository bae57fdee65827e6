/* A QEMU TCG plugin that counts, for every translated block, how often it ran, and writes "vaddr insns runs"
 * lines to the file named by $INSNPROF_OUT (default insnprof.txt) at exit: an exact per-address instruction
 * profile, which benches/pi-profile.py turns into instructions per function. Same plugin API as insncount.c
 * (version 1, QEMU 7.2; entry points in qemu-plugin-v1.h).
 *
 *   gcc -shared -fPIC -O2 -o libinsnprofile.so benches/pi/insnprofile.c
 *   INSNPROF_OUT=prof.txt qemu-aarch64 -plugin ./libinsnprofile.so -L SYSROOT PROGRAM ARGS...
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "qemu-plugin-v1.h"

/* One counter per translation (a block translated twice gets two; the script adds them up). Single-threaded
 * guests only, like insncount.c. */
struct block {
    uint64_t vaddr, insns, runs;
    struct block *next;
};
static struct block *blocks;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    struct block *b = calloc(1, sizeof *b);
    (void)id;
    if (!b) {
        return;
    }
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->insns = qemu_plugin_tb_n_insns(tb);
    b->next = blocks;
    blocks = b;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->runs, 1);
}

static void on_exit_report(qemu_plugin_id_t id, void *userdata) {
    const char *path = getenv("INSNPROF_OUT");
    FILE *f = fopen(path ? path : "insnprof.txt", "w");
    (void)id;
    (void)userdata;
    if (!f) {
        return;
    }
    for (struct block *b = blocks; b; b = b->next) {
        if (b->runs) {
            fprintf(f, "%" PRIx64 " %" PRIu64 " %" PRIu64 "\n", b->vaddr, b->insns, b->runs);
        }
    }
    fclose(f);
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
