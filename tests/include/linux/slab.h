/* Minimal stand-in for the kernel's <linux/slab.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_SLAB_H
#define _TEST_LINUX_SLAB_H

#include <linux/types.h>

#define GFP_KERNEL 0

void *kzalloc(size_t size, int flags);
void kfree(const void *p);

void *kvzalloc(size_t size, int flags);
void kvfree(const void *addr);

#endif
