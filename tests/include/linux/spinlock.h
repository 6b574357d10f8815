/* Minimal stand-in for the kernel's <linux/spinlock.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_SPINLOCK_H
#define _TEST_LINUX_SPINLOCK_H

typedef struct { int locked; } spinlock_t;

void spin_lock(spinlock_t *lock);
void spin_unlock(spinlock_t *lock);

#endif
