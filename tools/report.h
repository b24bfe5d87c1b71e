/* Output of replay results: one JSON object per trace and policy (the interface other tools
 * parse: DESIGN.md "Interfaces other tools rely on"), the side-by-side text table of
 * `compare`, and the SVG plot of reserved and live memory over each trace (svg.c).
 * Numbers that do not exist (a header key the trace lacks, a share of an unknown run time)
 * are JSON null and "-" in the table, never an error.
 */
#ifndef VMS_TOOLS_REPORT_H
#define VMS_TOOLS_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "replay.h"

/* One line: {"trace":..., "policy":..., ...}\n */
void report_json(FILE *out, const replay_result *r, const replay_policy_result *p);
/* The table of every policy in r, with a title block for the trace. */
void report_table(FILE *out, const replay_result *r);
/* Writes an SVG with one panel per result. Returns false with a message on I/O failure. */
bool report_svg(const char *path, const replay_result *results, int nresults, char *err,
                size_t err_cap);

#endif
