/* Minimal stand-in for the kernel's <linux/types.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_TYPES_H
#define _TEST_LINUX_TYPES_H

#define NULL ((void *)0)

typedef _Bool bool;
#define true	1
#define false	0

typedef unsigned long size_t;
typedef unsigned int u32;
typedef unsigned long long u64;

#define __user

typedef long ssize_t;
typedef unsigned char u8;

#endif
