/* test_tag.c - core/tag.h: user_data tags round-trip every kind with pointers and maximal payloads. */
#include "core/tag.h"

#include <criterion/criterion.h>
#include <stdlib.h>

static const enum tag_kind kinds[] = {TAG_ACCEPT, TAG_RECV, TAG_SEND, TAG_SHUTDOWN, TAG_IGNORE, TAG_HANDOFF, TAG_HANDOFF_SENT};

Test(tag, kinds_are_distinct_and_nonzero)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        cr_assert_neq(kinds[i], TAG_NONE);
        cr_assert_lt((unsigned)kinds[i], 256u, "kind fits 8 bits");
        for (size_t j = 0; j < i; j++)
            cr_assert_neq(kinds[i], kinds[j]);
    }
    cr_assert_eq(tag_kind(0), TAG_NONE, "a zeroed user_data is recognisably bogus");
}

Test(tag, payload_round_trip)
{
    const uint64_t payloads[] = {
        0, 1, 2, 0xff, 0xffffffffu, UINT64_C(1) << 47, TAG_PAYLOAD_MASK, TAG_PAYLOAD_MASK - 1, (UINT64_C(255) << 32) | 0xffffffffu};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        for (size_t j = 0; j < sizeof(payloads) / sizeof(payloads[0]); j++) {
            uint64_t t = tag_make(kinds[i], payloads[j]);
            cr_assert_eq(tag_kind(t), kinds[i], "kind %d payload %llx", kinds[i], (unsigned long long)payloads[j]);
            cr_assert_eq(tag_payload(t), payloads[j]);
            cr_assert_neq(t, 0);
        }
}

Test(tag, payload_never_spills_into_the_kind)
{
    uint64_t t = tag_make(TAG_RECV, UINT64_MAX);
    cr_assert_eq(tag_kind(t), TAG_RECV);
    cr_assert_eq(tag_payload(t), TAG_PAYLOAD_MASK);
    cr_assert_eq(TAG_PAYLOAD_MASK, (UINT64_C(1) << 56) - 1);
    cr_assert_eq(tag_make(TAG_IGNORE, 0) >> TAG_KIND_SHIFT, TAG_IGNORE);
}

Test(tag, pointers_round_trip)
{
    static int static_obj;
    int stack_obj;
    void *heap_small = malloc(16);
    void *heap_big = malloc(64u << 20); /* typically mmap'ed: a high address */
    cr_assert_not_null(heap_small);
    cr_assert_not_null(heap_big);
    const void *ptrs[] = {&static_obj, &stack_obj, heap_small, heap_big, (const char *)heap_small + 15, NULL};
    for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++)
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            cr_assert_eq((uintptr_t)ptrs[i] & ~(uintptr_t)TAG_PAYLOAD_MASK, 0, "user pointer above 56 bits");
            uint64_t t = tag_make_ptr(kinds[k], ptrs[i]);
            cr_assert_eq(tag_ptr(t), ptrs[i]);
            cr_assert_eq(tag_kind(t), kinds[k]);
        }
    free(heap_small);
    free(heap_big);
}

Test(tag, handoff_sent_payload_layout)
{
    /* shard.c packs target shard << 32 | fd: every shard id (< 256) and fd survive. */
    for (uint64_t shard = 0; shard < 256; shard += 51)
        for (uint32_t fd = 0; fd < 0x7fffffff; fd = fd * 3 + 7) {
            uint64_t t = tag_make(TAG_HANDOFF_SENT, (shard << 32) | fd);
            cr_assert_eq(tag_payload(t) >> 32, shard);
            cr_assert_eq((uint32_t)tag_payload(t), fd);
        }
}
