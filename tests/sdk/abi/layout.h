/* One row of an ABI layout table (fields_1_0.h, fields_1_1.h). */
#ifndef HOSTLET_ABI_LAYOUT_H
#define HOSTLET_ABI_LAYOUT_H
#include <stddef.h>

typedef struct abi_row {
  const char *type;    /* the struct, or NULL for a constant */
  const char *name;    /* the member or the constant */
  size_t offset;       /* offsetof, or the constant's value */
  size_t size;         /* sizeof the member; 0 for a constant */
  size_t struct_size;  /* sizeof the struct */
} abi_row;

#define ABI_FIELD_ROW(T, M) {#T, #M, offsetof(T, M), sizeof(((T *)0)->M), sizeof(T)},
#define ABI_VALUE_ROW(V) {NULL, #V, (size_t)(V), 0, 0},

extern const abi_row abi_1_0_frozen[];  /* fields_1_0.h over the frozen header */
extern const size_t abi_1_0_frozen_n;
extern const abi_row abi_1_0_now[];     /* fields_1_0.h over the current header */
extern const size_t abi_1_0_now_n;
extern const abi_row abi_1_1_now[];     /* fields_1_1.h over the current header */
extern const size_t abi_1_1_now_n;
#endif
