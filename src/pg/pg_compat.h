/*
 * pg_compat.h - the few PostgreSQL APIs that changed between the major versions
 * pgbert supports (15 to 18), each under one name here so that no other file needs
 * a version test.
 */
#ifndef PGBERT_PG_COMPAT_H
#define PGBERT_PG_COMPAT_H

#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"

#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 190000
#error "pgbert supports PostgreSQL 15 to 18"
#endif

/* 16 replaced the per-catalog pg_*_aclcheck functions with object_aclcheck. */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_proc.h"
#define pgbert_proc_aclcheck(funcid, roleid, mode) \
	object_aclcheck(ProcedureRelationId, (funcid), (roleid), (mode))
#else
#define pgbert_proc_aclcheck(funcid, roleid, mode) pg_proc_aclcheck((funcid), (roleid), (mode))
#endif

/*
 * This backend's local transaction id, and its index among the MaxBackends backend
 * slots (0-based): 17 moved lxid into PGPROC.vxid and replaced the 1-based BackendId
 * with the 0-based ProcNumber.
 */
#if PG_VERSION_NUM >= 170000
#define pgbert_my_lxid() (MyProc->vxid.lxid)
#define pgbert_my_backend_index() ((int) MyProcNumber)
#else
#define pgbert_my_lxid() (MyProc->lxid)
#define pgbert_my_backend_index() ((int) MyBackendId - 1)
#endif

/* 18 moved the EXPLAIN property writers (ExplainPropertyInteger, ...) to their own header. */
#if PG_VERSION_NUM >= 180000
#define PGBERT_EXPLAIN_FORMAT_H "commands/explain_format.h"
#else
#define PGBERT_EXPLAIN_FORMAT_H "commands/explain.h"
#endif

#endif
