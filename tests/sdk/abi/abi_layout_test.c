/*
 * The ABI baseline check: every 1.0 field keeps its offset and size and every
 * 1.0 constant its value in the current header, structs only grow, and each
 * 1.1 addition lies past the end of its struct's 1.0 layout. Prints each
 * break and exits 1; 0 when the ABI only grew at its ends.
 */
#include <stdio.h>
#include <string.h>

#include "layout.h"

int main(void) {
  int bad = 0;
  size_t i, j;
  if (abi_1_0_frozen_n != abi_1_0_now_n) {
    printf("internal: the two expansions of fields_1_0.h differ in length\n");
    return 1;
  }
  for (i = 0; i < abi_1_0_now_n; i++) {
    const abi_row *was = &abi_1_0_frozen[i], *is = &abi_1_0_now[i];
    if (!was->type) {
      if (was->offset != is->offset) {
        printf("%s was %zu in 1.0, is %zu now\n", was->name, was->offset, is->offset);
        bad = 1;
      }
      continue;
    }
    if (was->offset != is->offset || was->size != is->size) {
      printf("%s.%s moved or changed: 1.0 offset %zu size %zu, now offset %zu size %zu\n", was->type, was->name,
             was->offset, was->size, is->offset, is->size);
      bad = 1;
    }
    if (is->struct_size < was->struct_size) {
      printf("%s shrank: %zu bytes in 1.0, %zu now\n", was->type, was->struct_size, is->struct_size);
      bad = 1;
    }
  }
  for (j = 0; j < abi_1_1_now_n; j++) {
    const abi_row *add = &abi_1_1_now[j];
    for (i = 0; i < abi_1_0_frozen_n; i++) {
      const abi_row *was = &abi_1_0_frozen[i];
      if (!was->type || strcmp(was->type, add->type) != 0) continue;
      if (add->offset < was->struct_size) {
        printf("%s.%s (1.1) lies inside the 1.0 struct (offset %zu < %zu bytes)\n", add->type, add->name,
               add->offset, was->struct_size);
        bad = 1;
      }
      break;
    }
  }
  if (!bad) printf("ABI 1.0 layout intact: %zu fields and constants checked, %zu 1.1 additions at the ends\n",
                   abi_1_0_now_n, abi_1_1_now_n);
  return bad;
}
