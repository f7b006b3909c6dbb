/* h2.c - HTTP/2 connections (interim: HTTP/2 is not served yet; prior-knowledge connections are refused and h2c upgrades are declined). */
#include "net/h2.h"

#include "net/conn.h"

int h2_start(struct conn *c)
{
    (void)c;
    return -1;
}

int h2_upgrade(struct conn *c, const struct h1_request *req)
{
    (void)c;
    (void)req;
    return -1;
}

size_t h2_process(struct conn *c, const char *data, size_t len)
{
    (void)c;
    (void)data;
    return len;
}

void h2_flush(struct conn *c)
{
    (void)c;
}

void h2_drain(struct conn *c)
{
    (void)c;
}

bool h2_idle(const struct conn *c)
{
    (void)c;
    return true;
}

bool h2_done(const struct conn *c)
{
    (void)c;
    return true;
}

void h2_free(struct conn *c)
{
    (void)c;
}
