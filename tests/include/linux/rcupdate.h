/* Minimal stand-in for the kernel's <linux/rcupdate.h>, for borrow_context.cocci test fixtures. */
#ifndef _TEST_LINUX_RCUPDATE_H
#define _TEST_LINUX_RCUPDATE_H

void rcu_read_lock(void);
void rcu_read_unlock(void);

#endif
