/* The environment variables that vms_config_resolve reads (VMSTITCH_* and GMLake's aliases),
 * for the tests that set them: one list, so that a new variable is cleared, restored and fed
 * garbage everywhere at once. env_save_clear unsets them all, remembering the caller's values;
 * env_restore puts those back. Not thread-safe (setenv). */
#ifndef VMS_TEST_OPTION_ENV_H
#define VMS_TEST_OPTION_ENV_H

#include <stdlib.h>
#include <string.h>

static const char *const opt_env_names[] = {
    "VMSTITCH_SMALL_CHUNK",
    "VMSTITCH_LARGE_CHUNK_MIN",
    "VMSTITCH_LARGE_CHUNK_MAX",
    "VMSTITCH_SMALL_REQUEST",
    "VMSTITCH_STITCH",
    "VMSTITCH_STITCH_MIN",
    "VMSTITCH_REUSE_LIMIT",
    "VMSTITCH_STITCH_WHEN",
    "VMSTITCH_GC_THRESHOLD",
    "VMSTITCH_GC_COUNT",
    "VMSTITCH_MEMORY_LIMIT",
    "VMSTITCH_LOG_LEVEL",
    "VMSTITCH_CHECK",
    "vmmDefragment",
    "fragLimit",
    "reuseLimit",
    "defragLevel",
    "autoGC",
};
#define N_OPT_ENV (sizeof opt_env_names / sizeof opt_env_names[0])

typedef struct env_saved {
    char *val[N_OPT_ENV];
} env_saved;

static inline void env_save_clear(env_saved *s) {
    for (size_t i = 0; i < N_OPT_ENV; i++) {
        const char *v = getenv(opt_env_names[i]);
        s->val[i] = v ? strdup(v) : NULL;
        unsetenv(opt_env_names[i]);
    }
}

static inline void env_restore(env_saved *s) {
    for (size_t i = 0; i < N_OPT_ENV; i++) {
        if (s->val[i])
            setenv(opt_env_names[i], s->val[i], 1);
        else
            unsetenv(opt_env_names[i]);
        free(s->val[i]);
        s->val[i] = NULL;
    }
}

#endif
