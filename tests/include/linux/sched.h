/* Minimal stand-in for the kernel's <linux/sched.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_SCHED_H
#define _TEST_LINUX_SCHED_H

#include <linux/types.h>
#include <linux/mm_types.h>

struct task_struct {
	int pid;
	struct mm_struct *mm;
	struct mm_struct *active_mm;
};

struct task_struct *get_current(void);
#define current get_current()

#endif
