/* record.c - validates one user record with jansson and re-serialises it as the compact JSON ringd stores. */
#include "store/store.h"

#include "core/alloc.h"
#include "store/pb.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* DECODE_ANY: a bare number or string still parses, so it is reported as "not
 * an object" rather than as a syntax error. Duplicate keys are refused: which
 * one a reader would believe is not defined by JSON. */
#define STORE_RECORD_LOAD_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)
/* Compact, keys in the file's order, non-ASCII kept as UTF-8 (no ENSURE_ASCII). */
#define STORE_RECORD_DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER)

static int store_record_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int store_record_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static const char *store_record_type(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* Checks the shape: an object whose id_field is an integer > 0. */
static int store_record_check(const json_t *root, const char *id_field, uint64_t *id, char *err, size_t errlen)
{
    if (!json_is_object(root))
        return store_record_fail(err, errlen, "not an object (%s)", store_record_type(root));
    const json_t *v = json_object_get(root, id_field);
    if (v == NULL)
        return store_record_fail(err, errlen, "no %s", id_field);
    if (!json_is_integer(v))
        return store_record_fail(err, errlen, "%s must be a positive integer, not %s", id_field, store_record_type(v));
    json_int_t n = json_integer_value(v);
    if (n <= 0)
        return store_record_fail(err, errlen, "%s must be a positive integer, not %" JSON_INTEGER_FORMAT, id_field, n);
    *id = (uint64_t)n;
    return 0;
}

static char *store_record_dump(const json_t *root)
{
    char *s = json_dumps(root, STORE_RECORD_DUMP_FLAGS);
    if (s == NULL) {
        /* A tree jansson just built always serialises; NULL means out of memory. */
        fprintf(stderr, "ringd: out of memory serialising a record\n");
        abort();
    }
    return s;
}

/* jansson holds integers in a json_int_t (long long) and refuses a longer
 * literal with json_error_numeric_overflow, error.position just past it. ids
 * go up to 2^64-1, so when that literal is the top-level id field:
 *   - parse the line twice more with the literal replaced by "0" and by "1",
 *     padded with spaces so nothing else moves. If the top-level id reads 0
 *     and then 1, the literal was the id (any other place it could have been
 *     would not change the id); each parse also validates the rest of the line.
 *   - serialise both trees: the two strings differ in exactly one byte, the
 *     id's digit, and the literal's digits go there.
 * Any other number beyond long long stays an error. */
static int store_record_big_id(const char *json, size_t len, size_t end, const char *id_field, uint64_t *id, char **out,
                               size_t *out_len, char *err, size_t errlen)
{
    size_t start = end;
    while (start > 0 && isdigit((unsigned char)json[start - 1]))
        start--;
    size_t ndigits = end - start;
    /* Only a plain non-negative integer literal (not an exponent, fraction or negative). */
    if (ndigits == 0 || ndigits > 20 || (start > 0 && strchr(":[, \t\r\n", json[start - 1]) == NULL))
        return store_record_fail(err, errlen, "number out of range at byte %zu", end);
    char digits[21];
    memcpy(digits, json + start, ndigits);
    digits[ndigits] = '\0';
    errno = 0;
    unsigned long long big = strtoull(digits, NULL, 10);
    if (errno == ERANGE)
        return store_record_fail(err, errlen, "number out of range at byte %zu (ids go up to 18446744073709551615)", end);

    int rc = -1;
    json_t *root[2] = {NULL, NULL};
    char *dump[2] = {NULL, NULL};
    char *text = xmalloc(len);
    memcpy(text, json, len);
    for (int i = 0; i < 2; i++) {
        memset(text + start, ' ', ndigits);
        text[start] = (char)('0' + i);
        json_error_t jerr;
        root[i] = json_loadb(text, len, STORE_RECORD_LOAD_FLAGS, &jerr);
        if (root[i] == NULL) {
            if (json_error_code(&jerr) == json_error_numeric_overflow)
                store_record_fail(err, errlen, "number out of range at byte %d (only id may exceed 2^63-1)", jerr.position);
            else
                store_record_fail(err, errlen, "not JSON: %s (column %d)", jerr.text, jerr.column);
            goto cleanup;
        }
        if (!json_is_object(root[i])) {
            store_record_fail(err, errlen, "not an object (%s)", store_record_type(root[i]));
            goto cleanup;
        }
        const json_t *v = json_object_get(root[i], id_field);
        if (!json_is_integer(v) || json_integer_value(v) != i) {
            store_record_fail(err, errlen, "number out of range at byte %zu (only id may exceed 2^63-1)", end);
            goto cleanup;
        }
        dump[i] = store_record_dump(root[i]);
    }

    size_t n = strlen(dump[0]);
    size_t at = 0;
    while (dump[0][at] == dump[1][at])
        at++;
    char *s = xmalloc(n - 1 + ndigits + 1);
    memcpy(s, dump[0], at);
    memcpy(s + at, digits, ndigits);
    memcpy(s + at + ndigits, dump[0] + at + 1, n - at - 1);
    s[n - 1 + ndigits] = '\0';
    *id = (uint64_t)big;
    *out = s;
    *out_len = n - 1 + ndigits;
    rc = 0;

cleanup:
    for (int i = 0; i < 2; i++) {
        json_decref(root[i]);
        free(dump[i]);
    }
    free(text);
    return rc;
}

int store_record_normalize(const char *json, size_t len, uint64_t *id, char **out, size_t *out_len, char *err, size_t errlen)
{
    return store_record_normalize_keyed(json, len, "id", id, out, out_len, err, errlen);
}

int store_record_normalize_keyed(const char *json, size_t len, const char *id_field, uint64_t *id, char **out, size_t *out_len,
                                 char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, STORE_RECORD_LOAD_FLAGS, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_numeric_overflow && jerr.position > 0 && (size_t)jerr.position <= len)
            return store_record_big_id(json, len, (size_t)jerr.position, id_field, id, out, out_len, err, errlen);
        return store_record_fail(err, errlen, "not JSON: %s (column %d)", jerr.text, jerr.column);
    }
    if (store_record_check(root, id_field, id, err, errlen) != 0) {
        json_decref(root);
        return -1;
    }
    *out = store_record_dump(root);
    *out_len = strlen(*out);
    json_decref(root);
    return 0;
}

int store_value_build(uint64_t id, const char *json, size_t len, struct buf *out, char *err, size_t errlen)
{
    if (len > UINT32_MAX)
        return store_record_fail(err, errlen, "record of %zu bytes: at most 4 GiB", len);
    size_t mark = out->len;
    uint8_t hdr[STORE_VALUE_HEADER] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
    buf_append(out, hdr, sizeof(hdr));
    buf_append(out, json, len);
    if (store_pb_user(id, json, len, out, err, errlen) != 0) {
        out->len = mark;
        return -1;
    }
    return 0;
}
