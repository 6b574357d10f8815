/* Minimal stand-in for the kernel's <linux/mm_types.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_MM_TYPES_H
#define _TEST_LINUX_MM_TYPES_H

typedef struct { int counter; } atomic_t;

struct mm_struct {
	unsigned long start_code;
	unsigned long task_size;
	atomic_t mm_users;
	atomic_t mm_count;
};

#endif
