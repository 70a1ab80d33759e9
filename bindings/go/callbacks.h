/* The Go functions the native library calls back (exported from ffi.go and consume.go).
   Every cgo preamble in this package that names them includes this file. */
#include <stdlib.h>
#include "headwater.h"

extern void hwGoComplete(size_t context, HwResult *result);
extern void hwGoRebalance(size_t context, HwRebalance kind, uint8_t *partitions, size_t partitions_len);
