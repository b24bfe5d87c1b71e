/* The command line of build/vmstitch (cli.c), apart from main.c so tests can link it. */
#ifndef VMS_TOOLS_CLI_H
#define VMS_TOOLS_CLI_H

/* Runs one command line; returns the exit status: 0 ok, 1 failure (no GPU for info, a policy
 * that cannot start, host out of memory), 2 bad input or usage. */
int cli_main(int argc, char **argv);

#endif
