/* Minimal stand-in for the kernel's <linux/errno.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_ERRNO_H
#define _TEST_LINUX_ERRNO_H

#define ENOMEM		12
#define EFAULT		14
#define EBUSY	16
#define EIO	5
#define EINVAL		22
#define ESRCH		3

#define EIOCBQUEUED	529

#endif
