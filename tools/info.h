/* `vmstitch info` (info.c): the device as the cuda backend describes it. */
#ifndef VMS_TOOLS_INFO_H
#define VMS_TOOLS_INFO_H

#include <stdbool.h>

/* Prints the device description (text, or the backend's JSON object); 0 on success, 1 where
 * there is no usable GPU or driver. */
int info_run(bool json);

#endif
