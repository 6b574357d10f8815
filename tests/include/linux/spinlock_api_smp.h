/* Minimal stand-in for the irq-saving spinlock calls of the kernel's
 * <linux/spinlock.h> (declared in <linux/spinlock_api_smp.h>), for
 * borrow_context.cocci test fixtures. */
#ifndef _TEST_LINUX_SPINLOCK_API_SMP_H
#define _TEST_LINUX_SPINLOCK_API_SMP_H

#include <linux/spinlock.h>

unsigned long _raw_spin_lock_irqsave(spinlock_t *lock);
#define spin_lock_irqsave(lock, flags)	((flags) = _raw_spin_lock_irqsave(lock))
void spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);

#endif
