/* build/vmstitch: replay and compare allocation traces, describe the GPU. See cli.c. */
#include "cli.h"

int main(int argc, char **argv) {
    return cli_main(argc, argv);
}
