/* key.h - how a user id becomes an LMDB key: an MDB_INTEGERKEY, i.e. a native-endian size_t. */
#ifndef RINGD_STORE_KEY_H
#define RINGD_STORE_KEY_H

#include <assert.h>
#include <lmdb.h>
#include <stdint.h>
#include <string.h>

/* MDB_INTEGERKEY compares keys as unsigned int or size_t; ids are 64-bit, so
 * ringd needs an LP64 size_t (every platform it targets). */
static_assert(sizeof(size_t) == sizeof(uint64_t), "ringd keys need a 64-bit size_t");

/* Points key at *slot, which receives id: slot must outlive every use of key
 * (LMDB reads the bytes during the call that takes the key, and no longer). */
static inline void store_key_encode(uint64_t id, size_t *slot, MDB_val *key)
{
    *slot = (size_t)id;
    key->mv_size = sizeof(*slot);
    key->mv_data = slot;
}

/* The id a key holds, or 0 (never a valid id) when the key has the wrong size.
 * memcpy: keys in the map are not guaranteed aligned. */
static inline uint64_t store_key_decode(const MDB_val *key)
{
    size_t v;
    if (key->mv_size != sizeof(v))
        return 0;
    memcpy(&v, key->mv_data, sizeof(v));
    return (uint64_t)v;
}

#endif
