/* Minimal stand-in for the kernel's <linux/iommu.h>, for use_mm.cocci test fixtures. */
#ifndef _TEST_LINUX_IOMMU_H
#define _TEST_LINUX_IOMMU_H

#include <linux/types.h>
#include <linux/mm_types.h>

struct device;
struct iommu_sva;

#define IOMMU_PASID_INVALID	(-1U)

struct iommu_sva *iommu_sva_bind_device(struct device *dev, struct mm_struct *mm);
void iommu_sva_unbind_device(struct iommu_sva *handle);
u32 iommu_sva_get_pasid(struct iommu_sva *handle);

#endif
