/* Minimal stand-in for the kernel's <linux/kernel.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_KERNEL_H
#define _TEST_LINUX_KERNEL_H

#include <linux/types.h>

#define offsetof(TYPE, MEMBER)	__builtin_offsetof(TYPE, MEMBER)
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#endif
