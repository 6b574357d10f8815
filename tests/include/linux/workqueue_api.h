/* Minimal stand-in for INIT_WORK() and schedule_work() of the kernel's
 * <linux/workqueue.h>, for borrow_context.cocci test fixtures. */
#ifndef _TEST_LINUX_WORKQUEUE_API_H
#define _TEST_LINUX_WORKQUEUE_API_H

#include <linux/types.h>
#include <linux/workqueue.h>

typedef void (*work_func_t)(struct work_struct *work);

void INIT_WORK(struct work_struct *work, work_func_t func);
bool schedule_work(struct work_struct *work);

#endif
