/* Minimal stand-in for the kernel's <linux/mmu_notifier.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_MMU_NOTIFIER_H
#define _TEST_LINUX_MMU_NOTIFIER_H

#include <linux/mm_types.h>

struct mmu_notifier;

struct mmu_notifier_ops {
	void (*release)(struct mmu_notifier *subscription, struct mm_struct *mm);
};

struct mmu_notifier {
	const struct mmu_notifier_ops *ops;
	struct mm_struct *mm;
};

int mmu_notifier_register(struct mmu_notifier *subscription, struct mm_struct *mm);
void mmu_notifier_unregister(struct mmu_notifier *subscription, struct mm_struct *mm);

#endif
