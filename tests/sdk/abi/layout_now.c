/* fields_1_0.h and fields_1_1.h over the current header (sdk/include). */
#include <hostlet/plugin.h>

#include "layout.h"

#define FIELD ABI_FIELD_ROW
#define VALUE ABI_VALUE_ROW
const abi_row abi_1_0_now[] = {
#include "fields_1_0.h"
};
const size_t abi_1_0_now_n = sizeof abi_1_0_now / sizeof abi_1_0_now[0];
const abi_row abi_1_1_now[] = {
#include "fields_1_1.h"
};
const size_t abi_1_1_now_n = sizeof abi_1_1_now / sizeof abi_1_1_now[0];
