/* Minimal stand-in for the kernel's <linux/err.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_ERR_H
#define _TEST_LINUX_ERR_H

#include <linux/types.h>

#define MAX_ERRNO	4095
#define IS_ERR_VALUE(x)	((unsigned long)(void *)(x) >= (unsigned long)-MAX_ERRNO)

static inline bool IS_ERR(const void *ptr)
{
	return IS_ERR_VALUE((unsigned long)ptr);
}

static inline long PTR_ERR(const void *ptr)
{
	return (long)ptr;
}

#endif
