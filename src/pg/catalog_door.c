/*
 * catalog_door.c - the one way into pgbert's catalog for roles that do not
 * own the extension.
 *
 * Only the extension's owner holds INSERT, UPDATE or DELETE on the catalog
 * tables. What users call to change it (import_model, drop_model,
 * deploy_model, grant_model, revoke_model, start_training, cancel_training,
 * pgbert.record_training) is this C function: it takes the role calling it
 * (GetUserId(): SET ROLE and security-definer callers included) and calls
 * pgbert.<function>_as(caller, the same arguments). Those functions are
 * SECURITY DEFINER, owned by the extension's owner, executable by nobody
 * else: they decide what the caller may do and then write.
 *
 * A definer function cannot learn who called it (current_user is the
 * definer), and a caller-supplied role argument could be forged; this door
 * supplies it instead. fmgr makes no EXECUTE check (the executor does, when
 * it starts a call), so the door may call functions its callers cannot.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "access/genam.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "catalog_door.h"

PG_FUNCTION_INFO_V1(pgbert_catalog_call);

/* The definer function behind a door function: pgbert.<its name>_as(regrole, its arguments). */
static Oid
definer_behind(Oid door_oid)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			argtypes[FUNC_MAX_ARGS];
	char	   *name;
	int			nargs;
	Oid			target;
	Oid			ext;
	bool		secdef;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(door_oid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", door_oid);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	nargs = proc->pronargs;
	if (nargs + 1 > FUNC_MAX_ARGS)
		elog(ERROR, "pgbert catalog function %s has too many arguments", NameStr(proc->proname));
	argtypes[0] = REGROLEOID;
	memcpy(argtypes + 1, proc->proargtypes.values, nargs * sizeof(Oid));
	name = psprintf("%s_as", NameStr(proc->proname));
	ReleaseSysCache(tup);

	target = LookupFuncName(list_make2(makeString("pgbert"), makeString(name)), nargs + 1, argtypes, false);

	/* only the extension's own definer functions may stand behind the door */
	ext = get_extension_oid("pgbert", false);
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(target));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", target);
	secdef = ((Form_pg_proc) GETSTRUCT(tup))->prosecdef;
	ReleaseSysCache(tup);
	if (getExtensionOfObject(ProcedureRelationId, target) != ext || !secdef)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("function pgbert.%s is not a pgbert catalog function", name)));
	return target;
}

/* A door function: call its definer function with the calling role prepended. */
Datum
pgbert_catalog_call(PG_FUNCTION_ARGS)
{
	FmgrInfo   *target = (FmgrInfo *) fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(inner, FUNC_MAX_ARGS);
	int			nargs = PG_NARGS();
	Datum		result;

	if (target == NULL)
	{
		target = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
		fmgr_info_cxt(definer_behind(fcinfo->flinfo->fn_oid), target, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = target;
	}
	if (target->fn_retset)
		elog(ERROR, "pgbert catalog functions return one value");

	InitFunctionCallInfoData(*inner, target, nargs + 1, fcinfo->fncollation, fcinfo->context, NULL);
	inner->args[0].value = ObjectIdGetDatum(GetUserId());
	inner->args[0].isnull = false;
	for (int i = 0; i < nargs; i++)
		inner->args[i + 1] = fcinfo->args[i];
	result = FunctionCallInvoke(inner);
	fcinfo->isnull = inner->isnull;
	return result;
}

/* The role that owns the pgbert extension, and with it the catalog and every model's weights. */
Oid
pgbert_extension_owner(void)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ, CStringGetDatum("pgbert"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"pgbert\" is not installed in this database")));
	return owner;
}

/* Schema-qualified name of one of the extension's functions (SPI connected). */
char *
pgbert_extension_function(const char *name)
{
	if (SPI_execute("SELECT quote_ident(n.nspname) FROM pg_catalog.pg_extension e "
					"JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgbert'",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"pgbert\" is not installed in this database")));
	return psprintf("%s.%s", SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
					quote_identifier(name));
}
