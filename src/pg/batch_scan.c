/*
 * batch_scan.c - transparent batching: per-row classify(), classify_scores()
 * and embed() calls in a plan node's target list run a block of rows at a
 * time, so plain SQL gets the speed of classify_batch().
 *
 * After standard planning, a planner hook looks for plan nodes whose target
 * list calls one of those functions, and rewrites each such node P into
 *
 *     PgbertBatch    P's target list, each call read from a result column
 *       -> P'        P computing the calls' arguments and the values the rest
 *                    of its target list needs, instead of the calls
 *
 * The PgbertBatch custom scan reads a block of P' rows, runs every call over
 * the block in one engine (or encoder worker) pass, then emits the rows in
 * their order. Qual clauses of P that call one of the functions move up to
 * PgbertBatch, which filters by them (P keeps its other clauses, so rows they
 * reject are never classified, as before).
 *
 * Aggregates evaluate their arguments and FILTER clauses per input row in the
 * Agg node itself; for those calls a PgbertBatch goes between the Agg and its
 * input instead, passing the rows through with one result column per call.
 *
 * Blocks start at one row and double up to pgbert.batch_rows, so a LIMIT
 * makes it read fewer than twice the rows it returns.
 *
 * What keeps the statement's meaning:
 *  - only calls evaluated for every row are batched: not those under CASE,
 *    in subqueries, in arguments of an aggregate with a FILTER, or after the
 *    first argument of COALESCE, AND and OR, and not calls whose arguments
 *    are volatile;
 *  - volatile target-list entries (nextval(), random()) and everything else
 *    that mentions a batched call are evaluated by PgbertBatch as it emits a
 *    row, so once per row returned, as before;
 *  - reading ahead runs P' further than a LIMIT consumes, so a statement with
 *    volatile functions anywhere else (quals, subqueries, FROM functions),
 *    and a node whose qual is volatile, are left alone;
 *  - SCROLL cursors and the inner side of a merge join (which need backward
 *    scans and mark/restore) are left alone, and so are target lists that
 *    read UPDATE ... SET (a, b) = (SELECT ...) results;
 *  - rescans restart the block; EvalPlanQual rechecks pass through;
 *  - EXECUTE permission on each batched function is checked at executor start,
 *    as evaluating the call would.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/pg_list.h"
#include "optimizer/optimizer.h"
#include "optimizer/planner.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "pg_compat.h"
#include PGBERT_EXPLAIN_FORMAT_H	/* after pg_compat.h, which names it */
#include "batch_scan.h"
#include "classify_sql.h"
#include "cpu.h"
#include "session_engine.h"

/* settings: pgbert.batching, pgbert.batch_rows */
static bool pgbert_batching = true;
static int	pgbert_batch_rows = 256;

static planner_hook_type prev_planner_hook = NULL;

/* ---- recognizing the batchable functions ---- */

/* Function oid -> which batchable function it is (PGBERT_FN_NONE for any other). */
typedef struct FnCacheEntry
{
	Oid			funcid;
	PgbertBatchFn fn;
} FnCacheEntry;

static HTAB *fn_cache = NULL;

/* pg_proc changed: forget what we learned about functions. */
static void
fn_cache_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	if (fn_cache != NULL)
	{
		hash_destroy(fn_cache);
		fn_cache = NULL;
	}
}

/*
 * Which batchable function a pg_proc row is: a C function of this library
 * with one of our link symbols and argument types.
 */
static PgbertBatchFn
fn_of_proc(HeapTuple tup)
{
	Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(tup);
	Datum		d;
	bool		isnull;
	char	   *probin,
			   *prosrc,
			   *base;
	PgbertBatchFn fn = PGBERT_FN_NONE;
	int			nargs;

	if (proc->prolang != ClanguageId || proc->proretset)
		return PGBERT_FN_NONE;
	d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_probin, &isnull);
	if (isnull)
		return PGBERT_FN_NONE;
	probin = TextDatumGetCString(d);
	base = strrchr(probin, '/');
	base = base ? base + 1 : probin;
	if (strcmp(base, "pgbert") != 0 && strcmp(base, "pgbert" DLSUFFIX) != 0)
		return PGBERT_FN_NONE;
	prosrc = TextDatumGetCString(SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull));
	if (strcmp(prosrc, "pgbert_classify") == 0)
		fn = PGBERT_FN_CLASSIFY;
	else if (strcmp(prosrc, "pgbert_classify_scores") == 0)
		fn = PGBERT_FN_CLASSIFY_SCORES;
	else if (strcmp(prosrc, "pgbert_embed") == 0)
		fn = PGBERT_FN_EMBED;
	nargs = fn == PGBERT_FN_EMBED ? 3 : 2;
	if (fn == PGBERT_FN_NONE || proc->pronargs != nargs)
		return PGBERT_FN_NONE;
	for (int i = 0; i < nargs; i++)
		if (proc->proargtypes.values[i] != TEXTOID)
			return PGBERT_FN_NONE;
	return fn;
}

/* Which batchable function funcid is, cached per backend until pg_proc changes. */
static PgbertBatchFn
batch_fn_of(Oid funcid)
{
	static bool callback_registered = false;
	FnCacheEntry *e;
	HeapTuple	tup;
	PgbertBatchFn fn = PGBERT_FN_NONE;

	if (funcid < FirstNormalObjectId)
		return PGBERT_FN_NONE;
	if (fn_cache != NULL && (e = hash_search(fn_cache, &funcid, HASH_FIND, NULL)) != NULL)
		return e->fn;

	/* the lookup may process invalidations, which drop the cache: insert after it */
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (HeapTupleIsValid(tup))
	{
		fn = fn_of_proc(tup);
		ReleaseSysCache(tup);
	}
	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, fn_cache_invalidate, (Datum) 0);
		callback_registered = true;
	}
	if (fn_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(FnCacheEntry);
		ctl.hcxt = TopMemoryContext;
		fn_cache = hash_create("pgbert batchable functions", 32, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(fn_cache, &funcid, HASH_ENTER, NULL);
	e->fn = fn;
	return fn;
}

/* The batchable function a node calls, if it is such a call with arguments that may run ahead. */
static PgbertBatchFn
batchable_call(Node *node)
{
	FuncExpr   *f;
	PgbertBatchFn fn;

	if (node == NULL || !IsA(node, FuncExpr))
		return PGBERT_FN_NONE;
	f = (FuncExpr *) node;
	if (f->funcretset || f->funcformat == COERCE_EXPLICIT_CAST || f->funcformat == COERCE_IMPLICIT_CAST)
		return PGBERT_FN_NONE;
	fn = batch_fn_of(f->funcid);
	if (fn == PGBERT_FN_NONE || list_length(f->args) != (fn == PGBERT_FN_EMBED ? 3 : 2))
		return PGBERT_FN_NONE;
	if (contain_volatile_functions((Node *) f->args))
		return PGBERT_FN_NONE;
	return fn;
}

/* Whether a query tree calls a batchable function anywhere (sublinks and subqueries included). */
static bool
mentions_batchable_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) && batch_fn_of(((FuncExpr *) node)->funcid) != PGBERT_FN_NONE)
		return true;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, mentions_batchable_walker, context, 0);
	return expression_tree_walker(node, mentions_batchable_walker, context);
}

/* ---- finding the calls of one target list ---- */

/*
 * Collect the batchable calls evaluated for every row of expr into *calls
 * (equal calls once). Stops at conditional evaluation and at other levels.
 */
static bool
collect_calls_walker(Node *node, List **calls)
{
	if (node == NULL)
		return false;
	if (batchable_call(node) != PGBERT_FN_NONE)
	{
		if (!list_member(*calls, node))
			*calls = lappend(*calls, node);
		return false;			/* nested calls in its arguments run per row in the child */
	}
	switch (nodeTag(node))
	{
		case T_CaseExpr:
		case T_Aggref:
		case T_WindowFunc:
		case T_GroupingFunc:
		case T_SubPlan:
		case T_AlternativeSubPlan:
		case T_SubLink:
		case T_RowCompareExpr:	/* compares column by column and stops at the first difference */
			return false;
		case T_CoalesceExpr:
			return collect_calls_walker(linitial(((CoalesceExpr *) node)->args), calls);
		case T_BoolExpr:
			/* AND and OR stop early; NOT evaluates its one argument */
			return collect_calls_walker(linitial(((BoolExpr *) node)->args), calls);
		default:
			return expression_tree_walker(node, collect_calls_walker, calls);
	}
}

/* Position (1-based) of call in calls, or 0. */
static int
call_index(List *calls, Node *node)
{
	ListCell   *lc;

	foreach(lc, calls)
		if (equal(lfirst(lc), node))
			return foreach_current_index(lc) + 1;
	return 0;
}

/* ---- building the child's target list and the node's expressions ---- */

/* What rewriting one plan node collects. */
typedef struct Rewrite
{
	List	   *calls;			/* FuncExpr nodes batched here */
	List	   *child_exprs;	/* the rewritten child's target list, as expressions */
	bool		unsupported;	/* something PgbertBatch must not evaluate */
} Rewrite;

/* Column (1-based) of expr in the child's new target list, added when new. */
static AttrNumber
child_column(Rewrite *rw, Expr *expr)
{
	ListCell   *lc;

	foreach(lc, rw->child_exprs)
		if (equal(lfirst(lc), expr))
			return foreach_current_index(lc) + 1;
	rw->child_exprs = lappend(rw->child_exprs, expr);
	return list_length(rw->child_exprs);
}

/* Nodes whose value belongs to the child's level: computed there, read as a column here. */
static bool
is_child_leaf(Node *node)
{
	return IsA(node, Var) || IsA(node, Param) || IsA(node, Aggref) || IsA(node, WindowFunc) ||
		IsA(node, GroupingFunc);
}

/* First pass: add to the child's target list what an expression evaluated here needs. */
static bool
gather_leaves_walker(Node *node, Rewrite *rw)
{
	if (node == NULL)
		return false;
	if (call_index(rw->calls, node) > 0)
	{
		ListCell   *lc;

		foreach(lc, ((FuncExpr *) node)->args)
			(void) child_column(rw, lfirst(lc));
		return false;
	}
	if (is_child_leaf(node))
	{
		(void) child_column(rw, (Expr *) node);
		return false;
	}
	if (IsA(node, SubPlan) || IsA(node, AlternativeSubPlan) || IsA(node, SubLink))
	{
		rw->unsupported = true;	/* would have to run at this level with the child's row */
		return false;
	}
	return expression_tree_walker(node, gather_leaves_walker, rw);
}

/* Whether a target list reads UPDATE ... SET (a, b) = (SELECT ...) results, which its own order sets. */
static bool
has_multiexpr_param_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_MULTIEXPR)
		return true;
	return expression_tree_walker(node, has_multiexpr_param_walker, context);
}

/* Context of the second pass. */
typedef struct Replace
{
	Rewrite    *rw;
	int			n_child;		/* columns of the child's target list */
} Replace;

/* A Var reading column attno of this node's scan tuple. */
static Var *
scan_column(AttrNumber attno, Expr *like)
{
	return makeVar(INDEX_VAR, attno, exprType((Node *) like), exprTypmod((Node *) like),
				   exprCollation((Node *) like), 0);
}

/* Second pass: calls become result columns, leaves become child columns. */
static Node *
replace_mutator(Node *node, Replace *r)
{
	int			j;

	if (node == NULL)
		return NULL;
	if ((j = call_index(r->rw->calls, node)) > 0)
		return (Node *) scan_column(r->n_child + j, (Expr *) node);
	if (is_child_leaf(node))
		return (Node *) scan_column(child_column(r->rw, (Expr *) node), (Expr *) node);
	return expression_tree_mutator(node, replace_mutator, r);
}

/*
 * A call with its arguments read from the child's row: what PgbertBatch
 * evaluates, and the description of its result column (EXPLAIN shows it).
 */
static Expr *
call_over_child(Rewrite *rw, FuncExpr *call)
{
	FuncExpr   *f = copyObject(call);
	List	   *args = NIL;
	ListCell   *lc;

	foreach(lc, call->args)
	{
		Expr	   *a = lfirst(lc);

		args = lappend(args, makeVar(OUTER_VAR, child_column(rw, a), exprType((Node *) a),
									 exprTypmod((Node *) a), exprCollation((Node *) a), 0));
	}
	f->args = args;
	return (Expr *) f;
}

/* ---- the plan surgery ---- */

static CustomScanMethods batch_scan_methods;

/* State of one pass over a finished plan. */
typedef struct Surgery
{
	int			next_plan_node_id;
} Surgery;

/* Plan node types whose target list PgbertBatch may take over. */
static bool
can_take_projection(Plan *plan)
{
	switch (nodeTag(plan))
	{
		case T_SeqScan:
		case T_SampleScan:
		case T_IndexScan:
		case T_IndexOnlyScan:
		case T_BitmapHeapScan:
		case T_TidScan:
		case T_TidRangeScan:
		case T_SubqueryScan:
		case T_FunctionScan:
		case T_ValuesScan:
		case T_CteScan:
		case T_NamedTuplestoreScan:
		case T_ForeignScan:
		case T_NestLoop:
		case T_MergeJoin:
		case T_HashJoin:
		case T_Agg:
		case T_WindowAgg:
			return true;
		case T_Result:
			return outerPlan(plan) != NULL;
		default:
			return false;
	}
}

/*
 * A PgbertBatch node over child, which it reads as OUTER_VAR. Its scan tuple
 * is the child's columns (child_exprs, the child's target list expressions)
 * followed by one result column per call in calls (FuncExprs whose arguments
 * read the child's row); tlist and qual read that tuple as INDEX_VAR.
 */
static CustomScan *
make_batch_node(Plan *child, List *child_exprs, List *calls, List *tlist, List *qual, Surgery *sg)
{
	CustomScan *cs = makeNode(CustomScan);
	List	   *scan_tlist = NIL;
	AttrNumber	attno = 0;
	ListCell   *lc;

	foreach(lc, child_exprs)
	{
		Expr	   *e = lfirst(lc);

		attno++;
		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry((Expr *) makeVar(OUTER_VAR, attno, exprType((Node *) e),
															  exprTypmod((Node *) e),
															  exprCollation((Node *) e), 0),
											 attno, NULL, false));
	}
	foreach(lc, calls)
		scan_tlist = lappend(scan_tlist, makeTargetEntry(lfirst(lc), ++attno, NULL, false));

	cs->scan.plan.startup_cost = child->startup_cost;
	cs->scan.plan.total_cost = child->total_cost;
	cs->scan.plan.plan_rows = child->plan_rows;
	cs->scan.plan.plan_width = child->plan_width;
	cs->scan.plan.parallel_aware = false;
	cs->scan.plan.parallel_safe = child->parallel_safe;
	cs->scan.plan.async_capable = false;
	cs->scan.plan.plan_node_id = sg->next_plan_node_id++;
	cs->scan.plan.targetlist = tlist;
	cs->scan.plan.qual = qual;
	cs->scan.plan.lefttree = child;
	cs->scan.plan.extParam = bms_copy(child->extParam);
	cs->scan.plan.allParam = bms_copy(child->allParam);
	cs->scan.scanrelid = 0;
	cs->flags = 0;
	cs->custom_scan_tlist = scan_tlist;
	cs->custom_exprs = calls;
	/*
	 * Private data are Nodes: other extensions' plan walkers (Citus reads the
	 * first element of every CustomScan's custom_private as a Node) and
	 * copyObject/nodeToString must be able to look at them.
	 */
	cs->custom_private = list_make1(makeInteger(pgbert_batch_rows));
	cs->methods = &batch_scan_methods;
	return cs;
}

/*
 * Put a PgbertBatch above plan when its target list has batchable calls;
 * returns what replaces plan (plan itself when nothing to do).
 */
static Plan *
wrap_node(Plan *plan, Surgery *sg)
{
	Rewrite		rw = {NIL, NIL, false};
	Replace		r;
	List	   *needs_here = NIL;	/* target entries PgbertBatch evaluates */
	List	   *batch_tlist = NIL,
			   *child_tlist = NIL,
			   *calls_over_child = NIL;
	List	   *moved_quals = NIL,	/* qual clauses with calls: PgbertBatch filters by them */
			   *kept_quals = NIL;
	ListCell   *lc;
	CustomScan *cs;
	int			n_child;

	if (!can_take_projection(plan) || contain_volatile_functions((Node *) plan->qual) ||
		has_multiexpr_param_walker((Node *) plan->targetlist, NULL))
		return plan;

	/*
	 * Entries with calls or volatile functions are PgbertBatch's to evaluate;
	 * the child computes the others as before. Clauses with calls move up.
	 */
	foreach(lc, plan->targetlist)
	{
		Expr	   *e = ((TargetEntry *) lfirst(lc))->expr;
		List	   *found = NIL;

		(void) collect_calls_walker((Node *) e, &found);
		if (found != NIL || contain_volatile_functions((Node *) e))
			needs_here = lappend_int(needs_here, foreach_current_index(lc));
		rw.calls = list_concat_unique(rw.calls, found);
	}
	foreach(lc, plan->qual)
	{
		List	   *found = NIL;

		(void) collect_calls_walker(lfirst(lc), &found);
		if (found != NIL)
			moved_quals = lappend(moved_quals, lfirst(lc));
		else
			kept_quals = lappend(kept_quals, lfirst(lc));
		rw.calls = list_concat_unique(rw.calls, found);
	}
	if (rw.calls == NIL)
		return plan;

	/* the child's columns: what the evaluated entries, clauses and calls read */
	foreach(lc, plan->targetlist)
	{
		Expr	   *e = ((TargetEntry *) lfirst(lc))->expr;

		if (list_member_int(needs_here, foreach_current_index(lc)))
			(void) gather_leaves_walker((Node *) e, &rw);
		else
			(void) child_column(&rw, e);
	}
	(void) gather_leaves_walker((Node *) moved_quals, &rw);
	foreach(lc, rw.calls)
		(void) gather_leaves_walker((Node *) lfirst(lc), &rw);
	if (rw.unsupported || expression_returns_set((Node *) plan->targetlist))
		return plan;

	/* PgbertBatch's target list: P's entries, reading child columns and results */
	n_child = list_length(rw.child_exprs);
	r.rw = &rw;
	r.n_child = n_child;
	foreach(lc, plan->targetlist)
	{
		TargetEntry *tle = flatCopyTargetEntry(lfirst(lc));

		if (list_member_int(needs_here, foreach_current_index(lc)))
			tle->expr = (Expr *) replace_mutator((Node *) tle->expr, &r);
		else
			tle->expr = (Expr *) scan_column(child_column(&rw, tle->expr), tle->expr);
		batch_tlist = lappend(batch_tlist, tle);
	}
	Assert(list_length(rw.child_exprs) == n_child);

	/* the child's new target list, then the node over it */
	foreach(lc, rw.child_exprs)
		child_tlist = lappend(child_tlist, makeTargetEntry(lfirst(lc), foreach_current_index(lc) + 1,
														   NULL, false));
	foreach(lc, rw.calls)
		calls_over_child = lappend(calls_over_child, call_over_child(&rw, lfirst(lc)));
	cs = make_batch_node(plan, rw.child_exprs, calls_over_child, batch_tlist,
						 (List *) replace_mutator((Node *) moved_quals, &r), sg);

	plan->targetlist = child_tlist;
	plan->qual = kept_quals;
	return (Plan *) cs;
}

/*
 * Collect the batchable calls an Agg evaluates for every input row: in
 * aggregate FILTER clauses, and in arguments of aggregates without one.
 */
static bool
aggregate_input_calls_walker(Node *node, List **calls)
{
	if (node == NULL)
		return false;
	if (IsA(node, Aggref))
	{
		Aggref	   *a = (Aggref *) node;

		(void) collect_calls_walker((Node *) a->aggfilter, calls);
		if (a->aggfilter == NULL)
			(void) collect_calls_walker((Node *) a->args, calls);
		return false;
	}
	return expression_tree_walker(node, aggregate_input_calls_walker, calls);
}

/* What replacing the calls of aggregate inputs needs. */
typedef struct InputCalls
{
	List	   *calls;
	int			n_child;		/* the results follow the child's columns */
} InputCalls;

/* Calls become the result columns PgbertBatch appends to the Agg's input rows. */
static Node *
input_calls_mutator(Node *node, InputCalls *ic)
{
	int			j;

	if (node == NULL)
		return NULL;
	if ((j = call_index(ic->calls, node)) > 0)
		return (Node *) makeVar(OUTER_VAR, ic->n_child + j, exprType(node), exprTypmod(node),
								exprCollation(node), 0);
	return expression_tree_mutator(node, input_calls_mutator, ic);
}

/* Rewrite the aggregate inputs collected by aggregate_input_calls_walker. */
static Node *
aggregate_inputs_mutator(Node *node, InputCalls *ic)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Aggref))
	{
		Aggref	   *a = (Aggref *) palloc(sizeof(Aggref));

		memcpy(a, node, sizeof(Aggref));
		if (a->aggfilter == NULL)
			a->args = (List *) input_calls_mutator((Node *) a->args, ic);
		a->aggfilter = (Expr *) input_calls_mutator((Node *) a->aggfilter, ic);
		return (Node *) a;
	}
	return expression_tree_mutator(node, aggregate_inputs_mutator, ic);
}

/*
 * Put a PgbertBatch between an Agg and its input when aggregates call a
 * batchable function per input row (count(*) FILTER (WHERE classify(b) =
 * 'spam'), string_agg(classify(b), ',')): it passes the input rows through
 * with one result column per call appended, which the aggregates then read.
 */
static void
batch_aggregate_inputs(Agg *agg, Surgery *sg)
{
	Plan	   *child = agg->plan.lefttree;
	InputCalls	ic = {NIL, 0};
	List	   *child_exprs = NIL;
	ListCell   *lc;
	CustomScan *cs;

	if (child == NULL)
		return;
	(void) aggregate_input_calls_walker((Node *) agg->plan.targetlist, &ic.calls);
	(void) aggregate_input_calls_walker((Node *) agg->plan.qual, &ic.calls);
	if (ic.calls == NIL)
		return;
	ic.n_child = list_length(child->targetlist);

	foreach(lc, child->targetlist)
		child_exprs = lappend(child_exprs, ((TargetEntry *) lfirst(lc))->expr);
	cs = make_batch_node(child, child_exprs, copyObject(ic.calls), NIL, NIL, sg);
	/* it returns its scan tuple as is: the child's columns, then the results */
	foreach(lc, cs->custom_scan_tlist)
	{
		TargetEntry *tle = lfirst(lc);

		cs->scan.plan.targetlist = lappend(cs->scan.plan.targetlist,
										   makeTargetEntry((Expr *) scan_column(tle->resno, tle->expr),
														   tle->resno, NULL, false));
	}

	agg->plan.lefttree = (Plan *) cs;
	agg->plan.targetlist = (List *) aggregate_inputs_mutator((Node *) agg->plan.targetlist, &ic);
	agg->plan.qual = (List *) aggregate_inputs_mutator((Node *) agg->plan.qual, &ic);
}

/*
 * Where a plan node keeps its children: pointers to each child field or list
 * cell. The children of other extensions' custom scans only when asked
 * (with_custom): such a node may expect its children as it planned them
 * (Timescale's ChunkAppend reads its chunk scans), so they are not rewritten.
 */
static List *
child_slots(Plan *plan, bool with_custom)
{
	List	   *slots = NIL;
	List	   *kids = NIL;
	ListCell   *lc;

	if (plan->lefttree)
		slots = lappend(slots, &plan->lefttree);
	if (plan->righttree)
		slots = lappend(slots, &plan->righttree);
	if (IsA(plan, Append))
		kids = ((Append *) plan)->appendplans;
	else if (IsA(plan, MergeAppend))
		kids = ((MergeAppend *) plan)->mergeplans;
	else if (IsA(plan, BitmapAnd))
		kids = ((BitmapAnd *) plan)->bitmapplans;
	else if (IsA(plan, BitmapOr))
		kids = ((BitmapOr *) plan)->bitmapplans;
	else if (IsA(plan, CustomScan) && with_custom)
		kids = ((CustomScan *) plan)->custom_plans;
	else if (IsA(plan, SubqueryScan))
		slots = lappend(slots, &((SubqueryScan *) plan)->subplan);
	foreach(lc, kids)
		slots = lappend(slots, &lfirst(lc));
	return slots;
}

/*
 * Rewrite plan's subtree bottom-up. needs_mark: a merge join above marks and
 * restores positions in it (the inner side, down to a Sort or Material that
 * keeps the rows itself), which PgbertBatch does not support.
 */
static Plan *
rewrite_tree(Plan *plan, bool needs_mark, Surgery *sg)
{
	bool		below_mark;
	ListCell   *lc;

	if (plan == NULL)
		return NULL;
	if (IsA(plan, CustomScan) && ((CustomScan *) plan)->methods == &batch_scan_methods)
		return plan;
	below_mark = needs_mark && !IsA(plan, Sort) && !IsA(plan, Material);
	foreach(lc, child_slots(plan, false))
	{
		Plan	  **slot = lfirst(lc);

		*slot = rewrite_tree(*slot, below_mark || (IsA(plan, MergeJoin) && slot == &plan->righttree), sg);
	}
	if (IsA(plan, Agg))
		batch_aggregate_inputs((Agg *) plan, sg);
	return needs_mark ? plan : wrap_node(plan, sg);
}

/* Largest plan_node_id in a subtree. */
static int
max_plan_node_id(Plan *plan)
{
	int			m = plan->plan_node_id;
	ListCell   *lc;

	foreach(lc, child_slots(plan, true))
		m = Max(m, max_plan_node_id(*(Plan **) lfirst(lc)));
	return m;
}

/* Whether anything but the top-level target list of a query is volatile. */
static bool
volatile_outside_target_list(Query *parse)
{
	List	   *tlist = parse->targetList;
	bool		result;

	parse->targetList = NIL;
	PG_TRY();
	{
		result = contain_volatile_functions((Node *) parse);
	}
	PG_FINALLY();
	{
		parse->targetList = tlist;
	}
	PG_END_TRY();
	return result;
}

/* planner_hook: plan as usual, then batch the per-row calls of the finished plan. */
static PlannedStmt *
batch_planner(Query *parse, const char *query_string, int cursorOptions, ParamListInfo boundParams)
{
	bool		batch = false;
	PlannedStmt *stmt;

	/* decided on the query before the planner rewrites it in place */
	if (pgbert_batching && pgbert_batch_rows > 1 && parse->commandType != CMD_UTILITY &&
		!(cursorOptions & CURSOR_OPT_SCROLL) &&
		mentions_batchable_walker((Node *) parse, NULL))
		batch = !volatile_outside_target_list(parse);

	if (prev_planner_hook)
		stmt = prev_planner_hook(parse, query_string, cursorOptions, boundParams);
	else
		stmt = standard_planner(parse, query_string, cursorOptions, boundParams);

	if (batch)
	{
		Surgery		sg;
		ListCell   *lc;
		int			m = max_plan_node_id(stmt->planTree);

		foreach(lc, stmt->subplans)
			if (lfirst(lc) != NULL)
				m = Max(m, max_plan_node_id(lfirst(lc)));
		sg.next_plan_node_id = m + 1;
		stmt->planTree = rewrite_tree(stmt->planTree, false, &sg);
		foreach(lc, stmt->subplans)
			lfirst(lc) = rewrite_tree(lfirst(lc), false, &sg);
	}
	return stmt;
}

/* ---- execution ---- */

/* One batched call of a PgbertBatch node. */
typedef struct BatchCall
{
	FuncExpr   *call;			/* arguments over the child's row (OUTER_VAR) */
	PgbertBatchFn fn;
	ExprState  *args[3];		/* input, model, pooling (embed only) */
	void	   *site;			/* model resolution cache, like fn_extra */
	Datum	   *results;		/* per row of the block */
	bool	   *nulls;
} BatchCall;

typedef struct BatchState
{
	CustomScanState css;
	int			max_rows;		/* largest block */
	int			n_calls;
	BatchCall  *calls;
	int			child_natts;
	TupleTableSlot **rows;		/* the block: copies of the child's rows */
	int			rows_made;		/* slots created so far */
	int			block_rows;		/* rows in the block */
	int			next_row;		/* next row to emit */
	int			next_block;		/* size of the next block */
	bool		child_done;
	bool		unchecked_row;	/* the scan slot holds a row the recheck method has not seen */
	MemoryContext block_mcxt;	/* the block's inputs and results */
	ExprContext *args_cxt;		/* evaluates the arguments; reset with each block */
	text	  **inputs,
			  **models,
			  **poolings;
	int64		blocks;			/* for EXPLAIN ANALYZE */
	int			largest_block;
	int64		worker_rows;	/* call rows run in the encoder worker */
	int64		session_rows;	/* call rows run in this backend */
} BatchState;

static CustomExecMethods batch_exec_methods;

/* CreateCustomScanState: the node's state, with its calls read from custom_exprs. */
static Node *
batch_create_state(CustomScan *cscan)
{
	BatchState *st = (BatchState *) newNode(sizeof(BatchState), T_CustomScanState);
	ListCell   *lc;

	st->css.methods = &batch_exec_methods;
	st->max_rows = Max(intVal(linitial(cscan->custom_private)), 1);
	st->n_calls = list_length(cscan->custom_exprs);
	st->calls = palloc0(sizeof(BatchCall) * st->n_calls);
	foreach(lc, cscan->custom_exprs)
	{
		BatchCall  *c = &st->calls[foreach_current_index(lc)];

		c->call = lfirst(lc);
		c->fn = batch_fn_of(c->call->funcid);
		if (c->fn == PGBERT_FN_NONE)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("function %u is no longer one pgbert can batch", c->call->funcid),
					 errhint("Run the statement again to plan it anew.")));
		c->results = palloc(sizeof(Datum) * st->max_rows);
		c->nulls = palloc(sizeof(bool) * st->max_rows);
	}
	st->rows = palloc0(sizeof(TupleTableSlot *) * st->max_rows);
	st->inputs = palloc(sizeof(text *) * st->max_rows);
	st->models = palloc(sizeof(text *) * st->max_rows);
	st->poolings = palloc(sizeof(text *) * st->max_rows);
	return (Node *) st;
}

/* BeginCustomScan: start the child; check EXECUTE on the batched functions as calling them would. */
static void
batch_begin(CustomScanState *node, EState *estate, int eflags)
{
	BatchState *st = (BatchState *) node;
	Plan	   *child = outerPlan(node->ss.ps.plan);

	if (eflags & (EXEC_FLAG_BACKWARD | EXEC_FLAG_MARK))
		elog(ERROR, "pgbert batching node cannot scan backward or mark positions");
	for (int j = 0; j < st->n_calls; j++)
	{
		Oid			funcid = st->calls[j].call->funcid;
		AclResult	aclresult = pgbert_proc_aclcheck(funcid, GetUserId(), ACL_EXECUTE);

		if (aclresult != ACLCHECK_OK)
			aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(funcid));
		InvokeFunctionExecuteHook(funcid);
	}
	outerPlanState(node) = ExecInitNode(child, estate, eflags);

	/* the arguments read the block's copies of child rows: minimal tuples */
	node->ss.ps.outerops = &TTSOpsMinimalTuple;
	node->ss.ps.outeropsfixed = true;
	node->ss.ps.outeropsset = true;
	for (int j = 0; j < st->n_calls; j++)
	{
		BatchCall  *c = &st->calls[j];
		ListCell   *lc;

		foreach(lc, c->call->args)
			c->args[foreach_current_index(lc)] = ExecInitExpr(lfirst(lc), &node->ss.ps);
	}
	st->args_cxt = CreateExprContext(estate);
	st->child_natts = list_length(child->targetlist);
	st->block_mcxt = AllocSetContextCreate(estate->es_query_cxt, "pgbert batch", ALLOCSET_DEFAULT_SIZES);
	st->next_block = 1;
}

/* A text argument of the call for the row in the argument context, detoasted, or NULL. */
static text *
text_arg(ExprState *arg, ExprContext *cxt)
{
	bool		isnull;
	Datum		d;

	if (arg == NULL)
		return NULL;
	d = ExecEvalExprSwitchContext(arg, cxt, &isnull);
	return isnull ? NULL : DatumGetTextPP(d);
}

/* Read the next block of child rows and run every call over it. */
static void
fill_block(BatchState *st)
{
	PlanState  *child = outerPlanState(st);
	int			n = 0;
	MemoryContext old;

	MemoryContextReset(st->block_mcxt);
	while (n < st->next_block)
	{
		TupleTableSlot *s = ExecProcNode(child);

		if (TupIsNull(s))
		{
			st->child_done = true;
			break;
		}
		if (n == st->rows_made)
			st->rows[st->rows_made++] = MakeSingleTupleTableSlot(ExecGetResultType(child),
																 &TTSOpsMinimalTuple);
		ExecCopySlot(st->rows[n], s);
		n++;
	}
	st->block_rows = n;
	st->next_row = 0;
	if (n == 0)
		return;

	/* arguments live in the argument context until the next block */
	ResetExprContext(st->args_cxt);
	old = MemoryContextSwitchTo(st->args_cxt->ecxt_per_tuple_memory);
	for (int j = 0; j < st->n_calls; j++)
	{
		BatchCall  *c = &st->calls[j];

		for (int i = 0; i < n; i++)
		{
			st->args_cxt->ecxt_outertuple = st->rows[i];
			st->inputs[i] = text_arg(c->args[0], st->args_cxt);
			st->models[i] = text_arg(c->args[1], st->args_cxt);
			st->poolings[i] = text_arg(c->args[2], st->args_cxt);
		}
		MemoryContextSwitchTo(st->block_mcxt);
		pgbert_batch_eval(c->fn, &c->site, st->css.ss.ps.state->es_query_cxt, n,
						  st->inputs, st->models, st->poolings, c->results, c->nulls,
						  &st->worker_rows, &st->session_rows);
		MemoryContextSwitchTo(st->args_cxt->ecxt_per_tuple_memory);
	}
	MemoryContextSwitchTo(old);

	st->blocks++;
	st->largest_block = Max(st->largest_block, n);
	st->next_block = Min(st->next_block * 2, st->max_rows);
}

/* Access method: the next row of the block as the scan tuple (child columns, then results). */
static TupleTableSlot *
batch_next(ScanState *ss)
{
	BatchState *st = (BatchState *) ss;
	TupleTableSlot *slot = ss->ss_ScanTupleSlot;
	TupleTableSlot *row;

	if (st->next_row >= st->block_rows)
	{
		if (!st->child_done)
			fill_block(st);
		if (st->next_row >= st->block_rows)
			return ExecClearTuple(slot);
	}
	row = st->rows[st->next_row];
	ExecClearTuple(slot);
	slot_getallattrs(row);
	memcpy(slot->tts_values, row->tts_values, sizeof(Datum) * st->child_natts);
	memcpy(slot->tts_isnull, row->tts_isnull, sizeof(bool) * st->child_natts);
	for (int j = 0; j < st->n_calls; j++)
	{
		slot->tts_values[st->child_natts + j] = st->calls[j].results[st->next_row];
		slot->tts_isnull[st->child_natts + j] = st->calls[j].nulls[st->next_row];
	}
	st->next_row++;
	st->unchecked_row = true;
	return ExecStoreVirtualTuple(slot);
}

/*
 * Recheck method (EvalPlanQual). The child applies EvalPlanQual to the rows it
 * returns, so a row this node made from them stands. Releases differ in how
 * they call it: some fetch with the access method and then recheck that row,
 * others only call the recheck method, which must then fetch the row itself.
 */
static bool
batch_recheck(ScanState *ss, TupleTableSlot *slot)
{
	BatchState *st = (BatchState *) ss;
	TupleTableSlot *row;

	if (st->unchecked_row && !TupIsNull(slot))
	{
		st->unchecked_row = false;
		return true;
	}
	row = batch_next(ss);		/* (TupIsNull evaluates its argument twice) */
	st->unchecked_row = false;
	return !TupIsNull(row);
}

/* ExecCustomScan: rows through the usual scan loop (qual and projection). */
static TupleTableSlot *
batch_exec(CustomScanState *node)
{
	return ExecScan(&node->ss, batch_next, batch_recheck);
}

/* EndCustomScan: release the block and end the child. */
static void
batch_end(CustomScanState *node)
{
	BatchState *st = (BatchState *) node;

	for (int i = 0; i < st->rows_made; i++)
		ExecDropSingleTupleTableSlot(st->rows[i]);
	st->rows_made = 0;
	ExecEndNode(outerPlanState(node));
}

/* ReScanCustomScan: forget the block and start again with small blocks. */
static void
batch_rescan(CustomScanState *node)
{
	BatchState *st = (BatchState *) node;
	PlanState  *child = outerPlanState(node);

	st->block_rows = st->next_row = 0;
	st->child_done = false;
	st->unchecked_row = false;
	st->next_block = 1;
	MemoryContextReset(st->block_mcxt);
	if (child->chgParam == NULL)
		ExecReScan(child);
}

/* ExplainCustomScan: the largest block, and with ANALYZE what ran. */
static void
batch_explain(CustomScanState *node, List *ancestors, ExplainState *es)
{
	BatchState *st = (BatchState *) node;

	ExplainPropertyInteger("Batch Size", "rows", st->max_rows, es);
	if (es->analyze)
	{
		ExplainPropertyInteger("Batches", NULL, st->blocks, es);
		ExplainPropertyInteger("Largest Batch", "rows", st->largest_block, es);
		/* which path ran the model: the encoder worker, or this process (this worker, when parallel) */
		ExplainPropertyInteger("Rows In Encoder Worker", NULL, st->worker_rows, es);
		ExplainPropertyInteger("Rows In Session", NULL, st->session_rows, es);
		if (st->session_rows > 0)
		{
			char		path[160];

			/* the instruction set and arithmetic of this process's engine (cpu.h) */
			bt_cpu_describe(path, sizeof(path));
			ExplainPropertyText("CPU Path", path, es);
			ExplainPropertyText("CPU Precision", pgbert_cpu_precision_name(pgbert_cpu_precision), es);
		}
	}
}

static CustomScanMethods batch_scan_methods = {
	.CustomName = "PgbertBatch",
	.CreateCustomScanState = batch_create_state,
};

static CustomExecMethods batch_exec_methods = {
	.CustomName = "PgbertBatch",
	.BeginCustomScan = batch_begin,
	.ExecCustomScan = batch_exec,
	.EndCustomScan = batch_end,
	.ReScanCustomScan = batch_rescan,
	.ExplainCustomScan = batch_explain,
};

/* Define the settings, register the node (plans reach parallel workers by its name), install the hook. */
void
pgbert_batch_scan_init(void)
{
	DefineCustomBoolVariable("pgbert.batching",
							 "Batch per-row classify(), classify_scores() and embed() calls across rows.",
							 "Applies to statements planned after it changes; EXPLAIN shows a PgbertBatch node.",
							 &pgbert_batching, true, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.batch_rows",
							"Most rows one batching node reads ahead and runs together.",
							"Blocks start at one row and double up to this; 1 turns batching off.",
							&pgbert_batch_rows, 256, 1, 65536, PGC_USERSET, 0, NULL, NULL, NULL);
	RegisterCustomScanMethods(&batch_scan_methods);
	prev_planner_hook = planner_hook;
	planner_hook = batch_planner;
}
