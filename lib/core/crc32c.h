/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the
 * on-disk journal. Table-driven (slicing-by-8), pure, no state outside the caller's value.
 */
#ifndef CIOT_CORE_CRC32C_H
#define CIOT_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: start with crc = 0, feed the pieces in order; the value
 * returned after the last piece is the CRC of their concatenation.
 * ciot__crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t ciot__crc32c(uint32_t crc, const void *data, size_t len);

#endif /* CIOT_CORE_CRC32C_H */
