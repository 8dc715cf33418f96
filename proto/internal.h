/* Readers shared by proto's decoders; msgpack-c stays inside proto/. */
#ifndef ARREARS_PROTO_INTERNAL_H
#define ARREARS_PROTO_INTERNAL_H

#include <msgpack.h>

#include "proto.h"

/* The value under key, or NULL when absent or nil (nil means absent). */
const msgpack_object *proto_map_get(const msgpack_object *map, const char *key);
/* False unless o is a msgpack integer in lo..hi (floats are never integers). */
bool proto_read_int(const msgpack_object *o, int64_t lo, int64_t hi, int64_t *v);
bool proto_read_bool(const msgpack_object *o, bool *v);
bool proto_read_city(const msgpack_object *o, uint32_t *city);
bool proto_read_month(const msgpack_object *o, int32_t *month);
bool proto_read_date(const msgpack_object *o, int32_t *date);
/* Index of a string among names, -1 when absent, not a string or unknown. */
int proto_read_name(const msgpack_object *o, const char *const *names, uint32_t name_count);

#endif
