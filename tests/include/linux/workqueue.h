/* Minimal stand-in for the kernel's <linux/workqueue.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_WORKQUEUE_H
#define _TEST_LINUX_WORKQUEUE_H

struct work_struct { unsigned long data; };

#endif
