/* fields_1_0.h over the frozen 1.0 header (tests/sdk/abi-1.0 on the include path). */
#include <hostlet/plugin.h>

#include "layout.h"

#if HOSTLET_ABI_MINOR != 0
#error "layout_1_0.c must see the frozen 1.0 header"
#endif

#define FIELD ABI_FIELD_ROW
#define VALUE ABI_VALUE_ROW
const abi_row abi_1_0_frozen[] = {
#include "fields_1_0.h"
};
const size_t abi_1_0_frozen_n = sizeof abi_1_0_frozen / sizeof abi_1_0_frozen[0];
