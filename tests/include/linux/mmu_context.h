/* Minimal stand-in for the kernel's pre-v5.8 <linux/mmu_context.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_MMU_CONTEXT_H
#define _TEST_LINUX_MMU_CONTEXT_H

#include <linux/sched.h>

void use_mm(struct mm_struct *mm);
void unuse_mm(struct mm_struct *mm);

#endif
