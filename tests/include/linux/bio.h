/* Minimal stand-in for the kernel's <linux/bio.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_BIO_H
#define _TEST_LINUX_BIO_H

struct bio { unsigned int bi_size; };

void bio_put(struct bio *bio);

#endif
