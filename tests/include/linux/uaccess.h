/* Minimal stand-in for the kernel's <linux/uaccess.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_UACCESS_H
#define _TEST_LINUX_UACCESS_H

#include <linux/types.h>

unsigned long copy_to_user(void __user *to, const void *from, unsigned long n);
unsigned long copy_from_user(void *to, const void __user *from, unsigned long n);

#endif
