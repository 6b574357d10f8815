/* Minimal stand-in for the kernel's <linux/kref.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_KREF_H
#define _TEST_LINUX_KREF_H

struct kref { unsigned int refcount; };

void kref_init(struct kref *kref);
void kref_get(struct kref *kref);
int kref_put(struct kref *kref, void (*release)(struct kref *kref));

#endif
