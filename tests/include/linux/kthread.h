/* Minimal stand-in for the kernel's <linux/kthread.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_KTHREAD_H
#define _TEST_LINUX_KTHREAD_H

#include <linux/sched.h>

void kthread_use_mm(struct mm_struct *mm);
void kthread_unuse_mm(struct mm_struct *mm);

#endif
