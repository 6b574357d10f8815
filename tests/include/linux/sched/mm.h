/* Minimal stand-in for the kernel's <linux/sched/mm.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_SCHED_MM_H
#define _TEST_LINUX_SCHED_MM_H

#include <linux/sched.h>

void mmgrab(struct mm_struct *mm);
void mmdrop(struct mm_struct *mm);
void mmget(struct mm_struct *mm);
bool mmget_not_zero(struct mm_struct *mm);
void mmput(struct mm_struct *mm);
void mmput_async(struct mm_struct *mm);
struct mm_struct *get_task_mm(struct task_struct *task);
struct mm_struct *mm_alloc(void);

#endif
