/*
 * drop_guard.c - DROP EXTENSION pgbert must not strand model weights.
 *
 * Large objects are not extension members, so dropping the extension would
 * leave every model's weights behind with nothing pointing at them. An event
 * trigger on DROP EXTENSION runs first: it refuses while model versions exist,
 * as PostgreSQL refuses to drop objects that others depend on, and with
 * CASCADE it unlinks their large objects (as the current role, so privileges
 * apply) before the catalog goes; only those pgbert holds, never another
 * role's object that a catalog row points at.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"

PG_FUNCTION_INFO_V1(pgbert_guard_drop_extension);

/* True when a DROP EXTENSION statement names pgbert. */
static bool
drops_pgbert(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, stmt->objects)
	{
		Node	   *obj = lfirst(lc);

		if (IsA(obj, String) && strcmp(strVal(obj), "pgbert") == 0)
			return true;
	}
	return false;
}

/* Event trigger on ddl_command_start for DROP EXTENSION. */
Datum
pgbert_guard_drop_extension(PG_FUNCTION_ARGS)
{
	EventTriggerData *trig;
	DropStmt   *stmt;
	StringInfoData list;
	uint64		n;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pgbert.guard_drop_extension() must run as an event trigger")));
	trig = (EventTriggerData *) fcinfo->context;
	if (!IsA(trig->parsetree, DropStmt) || !drops_pgbert((DropStmt *) trig->parsetree))
		PG_RETURN_VOID();
	stmt = (DropStmt *) trig->parsetree;
	if (get_namespace_oid("pgbert", true) == InvalidOid)
		PG_RETURN_VOID();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT name, version, weights FROM pgbert.model_versions ORDER BY name, version",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list model versions");
	n = SPI_processed;
	if (n == 0)
	{
		SPI_finish();
		PG_RETURN_VOID();
	}
	initStringInfo(&list);
	for (uint64 i = 0; i < n; i++)
		appendStringInfo(&list, "%smodel %s version %s (weights: large object %s)",
						 i > 0 ? "\n" : "",
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1),
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2),
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3));

	if (stmt->behavior != DROP_CASCADE)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop extension pgbert because it stores %llu model version%s",
						(unsigned long long) n, n == 1 ? "" : "s"),
				 errdetail("%s", list.data),
				 errhint("Keep what you need with export_model() or pgbert_export, then drop the models "
						 "with drop_model(), or use DROP EXTENSION ... CASCADE to unlink their weights too.")));

	/*
	 * CASCADE: the weights go with the catalog (lo_unlink checks ownership), but
	 * only the large objects pgbert holds, sealed by import_model: a row a 0.3.0
	 * catalog let someone repoint at another role's object (a superuser's, say)
	 * must not make a superuser's DROP unlink that object.
	 */
	if (SPI_execute("SELECT pg_catalog.lo_unlink(v.weights) FROM pgbert.model_versions v "
					"JOIN pg_catalog.pg_largeobject_metadata m ON m.oid = v.weights "
					/* a catalog not yet updated to 0.4.0 has no weights_sealed: its rule then */
					"WHERE coalesce((pg_catalog.to_jsonb(v) ->> 'weights_sealed')::boolean, "
					"m.lomowner = v.owner::oid)",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not unlink model weights");
	ereport(NOTICE,
			(errmsg("drop cascades to %llu model version%s and %s weights",
					(unsigned long long) n, n == 1 ? "" : "s", n == 1 ? "its" : "their"),
			 errdetail("%s", list.data)));
	SPI_finish();
	PG_RETURN_VOID();
}
