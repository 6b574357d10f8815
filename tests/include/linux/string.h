/* Minimal stand-in for the kernel's <linux/string.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_STRING_H
#define _TEST_LINUX_STRING_H

#include <linux/types.h>

void *memset(void *s, int c, size_t n);

#endif
