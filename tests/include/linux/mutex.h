/* Minimal stand-in for the kernel's <linux/mutex.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_MUTEX_H
#define _TEST_LINUX_MUTEX_H

struct mutex { int count; };

void mutex_lock(struct mutex *lock);
void mutex_unlock(struct mutex *lock);

#endif
