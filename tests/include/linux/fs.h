/* Minimal stand-in for the kernel's <linux/fs.h>, for borrow_context.cocci test fixtures. */
#ifndef _TEST_LINUX_FS_H
#define _TEST_LINUX_FS_H

struct kiocb {
	void *private;
	int ki_flags;
	void (*ki_complete)(struct kiocb *iocb, long ret);
};

#include <linux/types.h>

static inline bool is_sync_kiocb(struct kiocb *kiocb)
{
	return kiocb->ki_complete == NULL;
}

#endif
