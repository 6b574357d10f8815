/* Minimal stand-in for guard() of the kernel's <linux/cleanup.h>, for
 * borrow_context.cocci test fixtures: guard(mutex)(&lock) takes the lock
 * until the end of the enclosing block. */
#ifndef _TEST_LINUX_CLEANUP_H
#define _TEST_LINUX_CLEANUP_H

#include <linux/mutex.h>

#define guard(_name)	guard_##_name
void guard_mutex(struct mutex *lock);

#endif
