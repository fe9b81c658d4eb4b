/* For tests that run on PostgreSQL under tests/support/pgcluster.sh: a fresh
 * database of the throwaway cluster per call. Header-only (psql, no libpq
 * link needed). */
#ifndef MQE2E_TEST_PGTEST_H
#define MQE2E_TEST_PGTEST_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* When MQE2E_TEST_PG_URI is set: create database PREFIX<pid>_<n>, write its
 * URI to out and return 1; otherwise return 0 (the test uses SQLite). */
static inline int pgtest_fresh_uri(char *out, size_t cap, const char *prefix)
{
    static unsigned n;
    const char *pg = getenv("MQE2E_TEST_PG_URI");
    if (pg == NULL || pg[0] == '\0') return 0;
    char name[64], cmd[1400];
    snprintf(name, sizeof name, "%s%ld_%u", prefix, (long)getpid(), n++);
    const char *q = strstr(pg, "/postgres?");
    cr_assert_not_null(q, "MQE2E_TEST_PG_URI names database postgres: %s", pg);
    cr_assert_null(strchr(pg, '\''));
    snprintf(cmd, sizeof cmd, "psql -X -q -v ON_ERROR_STOP=1 '%s' -c 'CREATE DATABASE %s'", pg,
             name);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    int w = snprintf(out, cap, "%.*s/%s%s", (int)(q - pg), pg, name, q + strlen("/postgres"));
    cr_assert(w > 0 && (size_t)w < cap, "URI fits");
    return 1;
}

#endif
