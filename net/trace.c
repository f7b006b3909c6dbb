/* trace.c - request ids and traceparent checks (see trace.h). */
#include "net/trace.h"

static const char hex[] = "0123456789abcdef";

void trace_idgen_init(struct trace_idgen *g, uint64_t prefix, unsigned shard)
{
    for (int i = 0; i < 16; i++)
        g->id[i] = hex[(prefix >> (60 - 4 * i)) & 15];
    g->id[16] = '-';
    g->id[17] = hex[(shard >> 4) & 15];
    g->id[18] = hex[shard & 15];
    g->id[19] = '-';
    for (int i = 20; i < TRACE_GEN_LEN; i++)
        g->id[i] = '0';
}

bool trace_request_id_ok(const char *v, size_t n)
{
    if (n == 0 || n > TRACE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* Whether v[0..n) is lower-case hex; *nonzero gets whether any digit is not 0. */
static bool lower_hex(const char *v, size_t n, bool *nonzero)
{
    bool nz = false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        nz |= c != '0';
    }
    *nonzero = nz;
    return true;
}

bool trace_parent_ok(const char *v, size_t n)
{
    if (n < TRACE_PARENT_LEN || n > TRACE_PARENT_MAX)
        return false;
    if (v[2] != '-' || v[35] != '-' || v[52] != '-')
        return false;
    bool nz;
    if (!lower_hex(v, 2, &nz) || (v[0] == 'f' && v[1] == 'f'))
        return false;
    bool version0 = v[0] == '0' && v[1] == '0';
    if (!lower_hex(v + 3, 32, &nz) || !nz)
        return false;
    if (!lower_hex(v + 36, 16, &nz) || !nz)
        return false;
    if (!lower_hex(v + 53, 2, &nz))
        return false;
    if (n == TRACE_PARENT_LEN)
        return true;
    /* Only a later version may be longer, and what follows starts with '-'. */
    return !version0 && v[TRACE_PARENT_LEN] == '-';
}
