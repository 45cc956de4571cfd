-- describe_extension.sql: a canonical text description of an extension's schema
--
--   psql -X -d DB -v ext=llmgw -f test/scripts/describe_extension.sql
--
-- One line per property, "object | property | value", sorted (C collation):
-- two databases whose extension schemas are the same print byte-identical
-- text, so an upgraded install and a fresh one compare with diff -u.
--
-- Described: the extension (version, schema, requirements, tables registered
-- with pg_extension_config_dump and their conditions), every member object
-- (pg_depend deptype 'e') and what the members own: columns, column
-- defaults, constraints, indexes, triggers (not the internal FK ones), row
-- security policies, rules, extended statistics, sequences owned by a column
-- (serial, identity), domain constraints, operator family members; for each:
-- owner, privileges (defaults spelt out, so a NULL ACL and an explicit one
-- equal to the default compare equal; grantees sorted), initial privileges
-- when they differ from the current ones, comments and security labels.
-- Not printed, as they differ between equal installs: OIDs, row data and row
-- counts, sequence values, statistics, sizes, timestamps; relations that are
-- not members (e.g. partitions created after the install) and what they own.
--
-- Side effects: none (a read-only transaction, rolled back; run it outside a
-- transaction block).  psql settings: output unaligned, tuples only.

\set QUIET on
\set ON_ERROR_STOP on
\if :{?ext}
\else
\set ext llmgw
\endif
\pset format unaligned
\pset tuples_only on
\pset footer off
\pset pager off

BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
-- names print schema-qualified, constants print the same way everywhere
SET LOCAL search_path = pg_catalog;
SET LOCAL DateStyle = 'ISO, YMD';
SET LOCAL IntervalStyle = postgres;
SET LOCAL TimeZone = 'UTC';
SET LOCAL extra_float_digits = 1;
SET LOCAL bytea_output = hex;
SET LOCAL quote_all_identifiers = off;
-- a big query over small catalogs: compiling it would take seconds
SET LOCAL jit = off;

WITH
ext AS (
    SELECT e.* FROM pg_extension e WHERE e.extname = :'ext'),
-- members of the extension
mem AS (
    SELECT d.classid, d.objid
      FROM pg_depend d JOIN ext ON d.refobjid = ext.oid
     WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'),
-- relations: members, sequences owned by members' columns (serial,
-- identity), the row types behind member composite types
rel0 AS (
    SELECT objid AS oid, true AS member FROM mem WHERE classid = 'pg_class'::regclass
    UNION
    SELECT s.oid, false
      FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.deptype IN ('a', 'i')
       AND d.refobjid IN (SELECT objid FROM mem WHERE classid = 'pg_class'::regclass)
       AND s.oid NOT IN (SELECT objid FROM mem WHERE classid = 'pg_class'::regclass)
    UNION
    SELECT t.typrelid, false
      FROM pg_type t JOIN mem ON mem.classid = 'pg_type'::regclass AND mem.objid = t.oid
     WHERE t.typtype = 'c' AND t.typrelid <> 0
       AND t.typrelid NOT IN (SELECT objid FROM mem WHERE classid = 'pg_class'::regclass)),
rel AS (
    SELECT c.oid, r.member, c.relname, c.relkind, c.relowner, c.relacl, c.reloptions,
           c.relpersistence, c.relrowsecurity, c.relforcerowsecurity, c.relreplident,
           c.reltablespace, c.relam, c.reloftype, c.relispartition, c.relpartbound,
           CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                WHEN 'f' THEN 'foreign table' WHEN 'c' THEN 'composite type'
                WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' ELSE 'relation' END
           || ' ' || c.oid::regclass::text AS label
      FROM rel0 r JOIN pg_class c ON c.oid = r.oid),
att AS (
    SELECT r.label || ' column ' || quote_ident(a.attname) AS label, r.oid AS relid, r.relkind,
           a.*
      FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid
     WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind NOT IN ('S', 'i', 'I')),
con AS (
    SELECT coalesce(r.label, 'type ' || format_type(t.oid, NULL)) || ' constraint '
           || quote_ident(k.conname) AS label, k.*
      FROM pg_constraint k
      LEFT JOIN rel r ON r.oid = k.conrelid
      LEFT JOIN pg_type t ON t.oid = k.contypid
               AND t.oid IN (SELECT objid FROM mem WHERE classid = 'pg_type'::regclass)
     WHERE r.oid IS NOT NULL OR t.oid IS NOT NULL),
idx AS (
    SELECT r.label || ' index ' || quote_ident(c.relname) AS label, c.oid, c.relname,
           c.reltablespace, c.relowner, i.*
      FROM rel r JOIN pg_index i ON i.indrelid = r.oid JOIN pg_class c ON c.oid = i.indexrelid),
trg AS (
    SELECT r.label || ' trigger ' || quote_ident(g.tgname) AS label, g.*
      FROM rel r JOIN pg_trigger g ON g.tgrelid = r.oid
     WHERE NOT g.tgisinternal),
pol AS (
    SELECT r.label || ' policy ' || quote_ident(p.polname) AS label, p.*
      FROM rel r JOIN pg_policy p ON p.polrelid = r.oid),
rul AS (
    SELECT r.label || ' rule ' || quote_ident(w.rulename) AS label, w.*
      FROM rel r JOIN pg_rewrite w ON w.ev_class = r.oid
     WHERE w.rulename <> '_RETURN'),
sta AS (
    SELECT r.label || ' statistics ' || quote_ident(s.stxname) AS label, s.*
      FROM rel r JOIN pg_statistic_ext s ON s.stxrelid = r.oid
     WHERE s.oid NOT IN (SELECT objid FROM mem WHERE classid = 'pg_statistic_ext'::regclass)),
fun AS (
    SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                WHEN 'w' THEN 'window function' ELSE 'function' END
           || ' ' || p.oid::regprocedure::text AS label, p.*
      FROM mem JOIN pg_proc p ON mem.classid = 'pg_proc'::regclass AND p.oid = mem.objid),
typ AS (
    SELECT 'type ' || format_type(t.oid, NULL) AS label, t.*
      FROM mem JOIN pg_type t ON mem.classid = 'pg_type'::regclass AND t.oid = mem.objid),
-- every object described, with its label (the key of its lines)
obj(classid, objid, objsubid, label, member) AS (
    SELECT 'pg_extension'::regclass, oid, 0, 'extension ' || quote_ident(extname), NULL::boolean
      FROM ext
    UNION ALL
    SELECT mem.classid, mem.objid, 0,
           coalesce(rel.label, fun.label, typ.label,
                    i.type || ' ' || i.identity), true
      FROM mem
      LEFT JOIN rel ON mem.classid = 'pg_class'::regclass AND rel.oid = mem.objid
      LEFT JOIN fun ON mem.classid = 'pg_proc'::regclass AND fun.oid = mem.objid
      LEFT JOIN typ ON mem.classid = 'pg_type'::regclass AND typ.oid = mem.objid
      CROSS JOIN LATERAL pg_identify_object(mem.classid, mem.objid, 0) i
    UNION ALL
    SELECT 'pg_class'::regclass, oid, 0, label, false FROM rel WHERE NOT member
    UNION ALL
    SELECT 'pg_class'::regclass, relid, attnum, label, NULL FROM att
    UNION ALL
    SELECT 'pg_constraint'::regclass, oid, 0, label, false FROM con
    UNION ALL
    SELECT 'pg_class'::regclass, oid, 0, label, false FROM idx
    UNION ALL
    SELECT 'pg_trigger'::regclass, oid, 0, label, false FROM trg
    UNION ALL
    SELECT 'pg_policy'::regclass, oid, 0, label, false FROM pol
    UNION ALL
    SELECT 'pg_rewrite'::regclass, oid, 0, label, false FROM rul
    UNION ALL
    SELECT 'pg_statistic_ext'::regclass, oid, 0, label, false FROM sta),
-- privileges: the current ACL (NULL spelt out as the default) and, from
-- pg_init_privs, the one pg_dump takes as the extension's
acl(label, iscol, cur, init) AS (
    SELECT r.label, false,
           coalesce(r.relacl, acldefault(CASE r.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", r.relowner)),
           coalesce(ip.initprivs,
                    acldefault(CASE r.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", r.relowner))
      FROM rel r
      LEFT JOIN pg_init_privs ip ON ip.classoid = 'pg_class'::regclass AND ip.objoid = r.oid
                                AND ip.objsubid = 0
     WHERE r.relkind NOT IN ('c', 'i', 'I')
    UNION ALL
    SELECT a.label, true, a.attacl, ip.initprivs
      FROM att a
      LEFT JOIN pg_init_privs ip ON ip.classoid = 'pg_class'::regclass AND ip.objoid = a.relid
                                AND ip.objsubid = a.attnum
     WHERE a.relkind <> 'c'
    UNION ALL
    SELECT f.label, false, coalesce(f.proacl, acldefault('f', f.proowner)),
           coalesce(ip.initprivs, acldefault('f', f.proowner))
      FROM fun f
      LEFT JOIN pg_init_privs ip ON ip.classoid = 'pg_proc'::regclass AND ip.objoid = f.oid
                                AND ip.objsubid = 0
    UNION ALL
    SELECT t.label, false, coalesce(t.typacl, acldefault('T', t.typowner)),
           coalesce(ip.initprivs, acldefault('T', t.typowner))
      FROM typ t
      LEFT JOIN pg_init_privs ip ON ip.classoid = 'pg_type'::regclass AND ip.objoid = t.oid
                                AND ip.objsubid = 0
    UNION ALL
    SELECT o.label, false, coalesce(n.nspacl, acldefault('n', n.nspowner)),
           coalesce(ip.initprivs, acldefault('n', n.nspowner))
      FROM obj o JOIN pg_namespace n ON o.classid = 'pg_namespace'::regclass AND n.oid = o.objid
      LEFT JOIN pg_init_privs ip ON ip.classoid = 'pg_namespace'::regclass AND ip.objoid = n.oid
                                AND ip.objsubid = 0
    UNION ALL
    SELECT o.label, false, coalesce(l.lanacl, acldefault('l', l.lanowner)),
           coalesce(ip.initprivs, acldefault('l', l.lanowner))
      FROM obj o JOIN pg_language l ON o.classid = 'pg_language'::regclass AND l.oid = o.objid
      LEFT JOIN pg_init_privs ip ON ip.classoid = 'pg_language'::regclass AND ip.objoid = l.oid
                                AND ip.objsubid = 0
    UNION ALL
    SELECT o.label, false, coalesce(w.fdwacl, acldefault('F', w.fdwowner)),
           coalesce(ip.initprivs, acldefault('F', w.fdwowner))
      FROM obj o JOIN pg_foreign_data_wrapper w
           ON o.classid = 'pg_foreign_data_wrapper'::regclass AND w.oid = o.objid
      LEFT JOIN pg_init_privs ip ON ip.classoid = 'pg_foreign_data_wrapper'::regclass
                                AND ip.objoid = w.oid AND ip.objsubid = 0
    UNION ALL
    SELECT o.label, false, coalesce(s.srvacl, acldefault('S', s.srvowner)),
           coalesce(ip.initprivs, acldefault('S', s.srvowner))
      FROM obj o JOIN pg_foreign_server s
           ON o.classid = 'pg_foreign_server'::regclass AND s.oid = o.objid
      LEFT JOIN pg_init_privs ip ON ip.classoid = 'pg_foreign_server'::regclass
                                AND ip.objoid = s.oid AND ip.objsubid = 0),
-- an ACL as sorted text: one "grantee: PRIVS (by grantor)" per grantee,
-- privileges with the grant option marked "*"
acltext AS (
    SELECT a.label, a.iscol, x.which,
           (SELECT string_agg(g, E'\n' ORDER BY g COLLATE "C")
              FROM (SELECT CASE e.grantee WHEN 0 THEN 'PUBLIC'
                                ELSE pg_get_userbyid(e.grantee) END
                           || ': ' || string_agg(e.privilege_type
                                                 || CASE WHEN e.is_grantable THEN '*' ELSE '' END,
                                                 ', ' ORDER BY e.privilege_type COLLATE "C")
                           || ' (by ' || pg_get_userbyid(e.grantor) || ')' AS g
                      FROM aclexplode(x.a) e
                     GROUP BY e.grantee, e.grantor) s) AS txt
      FROM acl a CROSS JOIN LATERAL (VALUES ('cur', a.cur), ('init', a.init)) x(which, a)),
-- the lines: (object, property, value); a multi-line value becomes one line
-- per line of text
raw(obj, prop, val) AS (
    -- the extension
    SELECT 'extension ' || quote_ident(e.extname), 'version', e.extversion FROM ext e
    UNION ALL
    SELECT 'extension ' || quote_ident(e.extname), 'schema', e.extnamespace::regnamespace::text
      FROM ext e
    UNION ALL
    SELECT 'extension ' || quote_ident(e.extname), 'relocatable', e.extrelocatable::text FROM ext e
    UNION ALL
    SELECT 'extension ' || quote_ident(e.extname), 'owner', pg_get_userbyid(e.extowner) FROM ext e
    UNION ALL
    SELECT 'extension ' || quote_ident(e.extname), 'requires', r.extname
      FROM ext e JOIN pg_depend d ON d.classid = 'pg_extension'::regclass AND d.objid = e.oid
                                 AND d.refclassid = 'pg_extension'::regclass
      JOIN pg_extension r ON r.oid = d.refobjid
    UNION ALL
    SELECT 'extension ' || quote_ident(e.extname), 'config dump',
           c.tab::regclass::text || coalesce(' ' || nullif(e.extcondition[c.n], ''), '')
      FROM ext e CROSS JOIN LATERAL unnest(e.extconfig) WITH ORDINALITY c(tab, n)
    UNION ALL
    -- every object: member or owned, comment, security labels
    SELECT o.label, 'membership',
           CASE WHEN o.member THEN 'extension member' ELSE 'owned by a member' END
      FROM obj o WHERE o.member IS NOT NULL
    UNION ALL
    SELECT o.label, 'comment', d.description
      FROM obj o JOIN pg_description d
           ON d.classoid = o.classid AND d.objoid = o.objid AND d.objsubid = o.objsubid
    UNION ALL
    SELECT o.label, 'security label ' || l.provider, l.label
      FROM obj o JOIN pg_seclabel l
           ON l.classoid = o.classid AND l.objoid = o.objid AND l.objsubid = o.objsubid
    UNION ALL
    -- privileges
    SELECT c.label, 'acl', g
      FROM acltext c CROSS JOIN LATERAL regexp_split_to_table(c.txt, E'\n') g
     WHERE c.which = 'cur'
    UNION ALL
    SELECT c.label, 'acl', '(none)' FROM acltext c
     WHERE c.which = 'cur' AND c.txt IS NULL AND NOT c.iscol
    UNION ALL
    SELECT c.label, 'initial acl (pg_init_privs), differs', g
      FROM acltext c JOIN acltext i ON i.label = c.label AND i.which = 'init'
     CROSS JOIN LATERAL regexp_split_to_table(coalesce(i.txt, '(none)'), E'\n') g
     WHERE c.which = 'cur' AND c.txt IS DISTINCT FROM i.txt
    UNION ALL
    -- schemas
    SELECT o.label, 'owner', pg_get_userbyid(n.nspowner)
      FROM obj o JOIN pg_namespace n ON o.classid = 'pg_namespace'::regclass AND n.oid = o.objid
    UNION ALL
    -- relations
    SELECT r.label, v.prop, v.val
      FROM rel r CROSS JOIN LATERAL (VALUES
        ('kind', CASE r.relkind WHEN 'r' THEN 'ordinary table' WHEN 'p' THEN 'partitioned table'
                      ELSE NULL END),
        ('owner', pg_get_userbyid(r.relowner)),
        ('persistence', CASE r.relpersistence WHEN 'p' THEN 'permanent' WHEN 'u' THEN 'unlogged'
                             ELSE 'temporary' END),
        ('tablespace', CASE WHEN r.reltablespace = 0 THEN NULL
                            ELSE (SELECT spcname FROM pg_tablespace WHERE oid = r.reltablespace) END),
        ('access method', (SELECT amname FROM pg_am WHERE oid = r.relam)),
        ('row level security',
            CASE WHEN r.relkind IN ('r', 'p') THEN
                CASE WHEN r.relrowsecurity THEN 'enabled' ELSE 'disabled' END
                || CASE WHEN r.relforcerowsecurity THEN ', forced' ELSE '' END END),
        ('replica identity',
            CASE WHEN r.relkind IN ('r', 'p', 'm') THEN
                CASE r.relreplident WHEN 'd' THEN 'default' WHEN 'n' THEN 'nothing'
                     WHEN 'f' THEN 'full' ELSE 'index' END END),
        ('partition key', CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END),
        ('partition of',
            CASE WHEN r.relispartition THEN
                (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = r.oid)
                || ' ' || pg_get_expr(r.relpartbound, r.oid) END),
        ('of type', CASE WHEN r.reloftype <> 0 THEN format_type(r.reloftype, NULL) END),
        ('columns',
            CASE WHEN r.relkind NOT IN ('S', 'i', 'I') THEN
                (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                   FROM pg_attribute a
                  WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped) END),
        ('definition', CASE WHEN r.relkind IN ('v', 'm') THEN pg_get_viewdef(r.oid, true) END)
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    SELECT r.label, 'inherits', i.inhparent::regclass::text || ' (' || i.inhseqno || ')'
      FROM rel r JOIN pg_inherits i ON i.inhrelid = r.oid
     WHERE NOT r.relispartition AND r.relkind NOT IN ('i', 'I')
    UNION ALL
    SELECT r.label, 'option', o.opt FROM rel r CROSS JOIN LATERAL unnest(r.reloptions) o(opt)
    UNION ALL
    -- sequences
    SELECT r.label, v.prop, v.val
      FROM rel r JOIN pg_sequence s ON s.seqrelid = r.oid
     CROSS JOIN LATERAL (VALUES
        ('data type', format_type(s.seqtypid, NULL)),
        ('start', s.seqstart::text), ('increment', s.seqincrement::text),
        ('minimum', s.seqmin::text), ('maximum', s.seqmax::text),
        ('cache', s.seqcache::text), ('cycle', s.seqcycle::text)) v(prop, val)
    UNION ALL
    SELECT r.label,
           CASE d.deptype WHEN 'i' THEN 'identity of' ELSE 'owned by' END,
           d.refobjid::regclass::text || '.' || quote_ident(a.attname)
      FROM rel r
      JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = r.oid
                      AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
                      AND d.deptype IN ('a', 'i')
      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE r.relkind = 'S'
    UNION ALL
    -- columns
    SELECT a.label, v.prop, v.val
      FROM att a
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
      JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_collation co ON co.oid = a.attcollation
     CROSS JOIN LATERAL (VALUES
        ('type', format_type(a.atttypid, a.atttypmod)),
        ('not null', CASE WHEN a.attnotnull THEN 'true' END),
        ('default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END),
        ('generated', CASE WHEN a.attgenerated = 's'
                           THEN 'ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') STORED' END),
        ('identity', CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END),
        ('collation', CASE WHEN a.attcollation <> t.typcollation THEN
                          CASE WHEN co.collnamespace = 'pg_catalog'::regnamespace
                               THEN quote_ident(co.collname)
                               ELSE co.collnamespace::regnamespace::text || '.'
                                    || quote_ident(co.collname) END END),
        ('storage', CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END),
        ('compression', nullif(a.attcompression::text, '')),
        ('statistics target', CASE WHEN a.attstattarget >= 0 THEN a.attstattarget::text END),
        ('inherited', CASE WHEN a.attinhcount > 0 THEN
                          a.attinhcount || CASE WHEN a.attislocal THEN ', local' ELSE '' END END)
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    -- (this server stamps every new column with pg_attver=<WAL position at
    -- its creation>: it differs between any two installs, so it is left out)
    SELECT a.label, 'option', o.opt FROM att a CROSS JOIN LATERAL unnest(a.attoptions) o(opt)
     WHERE o.opt NOT LIKE 'pg\_attver=%'
    UNION ALL
    SELECT a.label, 'fdw option', o.opt FROM att a CROSS JOIN LATERAL unnest(a.attfdwoptions) o(opt)
    UNION ALL
    -- constraints (tables and domains)
    SELECT k.label, 'definition', pg_get_constraintdef(k.oid) FROM con k
    UNION ALL
    SELECT k.label, 'inherited', k.coninhcount || CASE WHEN k.conislocal THEN ', local' ELSE '' END
      FROM con k WHERE k.coninhcount > 0
    UNION ALL
    -- indexes
    SELECT x.label, v.prop, v.val
      FROM idx x CROSS JOIN LATERAL (VALUES
        ('definition', pg_get_indexdef(x.indexrelid)),
        ('clustered', CASE WHEN x.indisclustered THEN 'true' END),
        ('replica identity', CASE WHEN x.indisreplident THEN 'true' END),
        ('valid', CASE WHEN NOT x.indisvalid THEN 'false' END),
        ('tablespace', CASE WHEN x.reltablespace = 0 THEN NULL
                            ELSE (SELECT spcname FROM pg_tablespace WHERE oid = x.reltablespace) END),
        ('partition of', (SELECT i.inhparent::regclass::text FROM pg_inherits i
                           WHERE i.inhrelid = x.indexrelid))
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    -- triggers
    SELECT g.label, 'definition', pg_get_triggerdef(g.oid) FROM trg g
    UNION ALL
    SELECT g.label, 'enabled',
           CASE g.tgenabled WHEN 'O' THEN 'origin' WHEN 'D' THEN 'disabled'
                WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' END
      FROM trg g
    UNION ALL
    SELECT g.label, 'cloned from the parent table', 'true' FROM trg g WHERE g.tgparentid <> 0
    UNION ALL
    -- row security policies
    SELECT p.label, v.prop, v.val
      FROM pol p CROSS JOIN LATERAL (VALUES
        ('type', CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END),
        ('command', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                         WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END),
        ('roles', (SELECT string_agg(CASE WHEN x = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x) END,
                                     ', ' ORDER BY CASE WHEN x = 0 THEN 'PUBLIC'
                                                        ELSE pg_get_userbyid(x)::text END COLLATE "C")
                     FROM unnest(p.polroles) x)),
        ('using', pg_get_expr(p.polqual, p.polrelid)),
        ('with check', pg_get_expr(p.polwithcheck, p.polrelid))
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    -- rules
    SELECT w.label, 'definition', pg_get_ruledef(w.oid) FROM rul w
    UNION ALL
    SELECT w.label, 'enabled', w.ev_enabled::text FROM rul w
    UNION ALL
    -- extended statistics (owned, or members)
    SELECT s.label, 'definition', pg_get_statisticsobjdef(s.oid) FROM sta s
    UNION ALL
    SELECT o.label, 'definition', pg_get_statisticsobjdef(o.objid)
      FROM obj o WHERE o.classid = 'pg_statistic_ext'::regclass AND o.member
    UNION ALL
    -- functions, procedures, aggregates
    SELECT f.label, v.prop, v.val
      FROM fun f JOIN pg_language l ON l.oid = f.prolang
     CROSS JOIN LATERAL (VALUES
        ('owner', pg_get_userbyid(f.proowner)),
        ('arguments', pg_get_function_arguments(f.oid)),
        ('identity arguments', pg_get_function_identity_arguments(f.oid)),
        ('result', pg_get_function_result(f.oid)),
        ('language', l.lanname::text),
        ('volatility', CASE f.provolatile WHEN 'i' THEN 'IMMUTABLE' WHEN 's' THEN 'STABLE'
                            ELSE 'VOLATILE' END),
        ('strict', f.proisstrict::text),
        ('security', CASE WHEN f.prosecdef THEN 'DEFINER' ELSE 'INVOKER' END),
        ('leakproof', f.proleakproof::text),
        ('parallel', CASE f.proparallel WHEN 's' THEN 'SAFE' WHEN 'r' THEN 'RESTRICTED'
                          ELSE 'UNSAFE' END),
        ('cost', f.procost::text),
        ('rows', CASE WHEN f.proretset THEN f.prorows::text END),
        ('support', CASE WHEN f.prosupport <> 0 THEN f.prosupport::regprocedure::text END),
        ('variadic', CASE WHEN f.provariadic <> 0 THEN format_type(f.provariadic, NULL) END),
        ('transforms', (SELECT string_agg(format_type(x, NULL), ', ' ORDER BY n)
                          FROM unnest(f.protrftypes) WITH ORDINALITY u(x, n))),
        ('body', CASE WHEN l.lanname NOT IN ('c', 'internal') AND f.prosqlbody IS NULL
                      THEN f.prosrc END),
        ('sql body', CASE WHEN f.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(f.oid) END),
        ('symbol', CASE WHEN l.lanname IN ('c', 'internal') THEN f.prosrc END),
        ('library', f.probin)
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    SELECT f.label, 'config', c.setting FROM fun f CROSS JOIN LATERAL unnest(f.proconfig) c(setting)
    UNION ALL
    SELECT f.label, v.prop, v.val
      FROM fun f JOIN pg_aggregate g ON g.aggfnoid = f.oid
     CROSS JOIN LATERAL (VALUES
        ('aggregate kind', g.aggkind::text),
        ('direct arguments', nullif(g.aggnumdirectargs, 0)::text),
        ('sfunc', g.aggtransfn::regprocedure::text),
        ('stype', format_type(g.aggtranstype, NULL)),
        ('sspace', nullif(g.aggtransspace, 0)::text),
        ('finalfunc', nullif(g.aggfinalfn, 0)::regprocedure::text),
        ('finalfunc extra', CASE WHEN g.aggfinalextra THEN 'true' END),
        ('finalfunc modify', g.aggfinalmodify::text),
        ('combinefunc', nullif(g.aggcombinefn, 0)::regprocedure::text),
        ('serialfunc', nullif(g.aggserialfn, 0)::regprocedure::text),
        ('deserialfunc', nullif(g.aggdeserialfn, 0)::regprocedure::text),
        ('msfunc', nullif(g.aggmtransfn, 0)::regprocedure::text),
        ('minvfunc', nullif(g.aggminvtransfn, 0)::regprocedure::text),
        ('mfinalfunc', nullif(g.aggmfinalfn, 0)::regprocedure::text),
        ('mfinalfunc extra', CASE WHEN g.aggmfinalextra THEN 'true' END),
        ('mfinalfunc modify', CASE WHEN g.aggmtransfn <> 0 THEN g.aggmfinalmodify::text END),
        ('mstype', nullif(g.aggmtranstype, 0)::regtype::text),
        ('msspace', nullif(g.aggmtransspace, 0)::text),
        ('sortop', nullif(g.aggsortop, 0)::regoperator::text),
        ('initcond', g.agginitval),
        ('minitcond', g.aggminitval)
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    -- types
    SELECT t.label, v.prop, v.val
      FROM typ t CROSS JOIN LATERAL (VALUES
        ('owner', pg_get_userbyid(t.typowner)),
        ('kind', CASE t.typtype WHEN 'b' THEN 'base' WHEN 'c' THEN 'composite'
                      WHEN 'd' THEN 'domain' WHEN 'e' THEN 'enum' WHEN 'p' THEN 'pseudo'
                      WHEN 'r' THEN 'range' WHEN 'm' THEN 'multirange' END),
        ('input', CASE WHEN t.typtype IN ('b', 'p') THEN t.typinput::regprocedure::text END),
        ('output', CASE WHEN t.typtype IN ('b', 'p') THEN t.typoutput::regprocedure::text END),
        ('receive', CASE WHEN t.typtype IN ('b', 'p') THEN nullif(t.typreceive, 0)::regprocedure::text END),
        ('send', CASE WHEN t.typtype IN ('b', 'p') THEN nullif(t.typsend, 0)::regprocedure::text END),
        ('typmod_in', nullif(t.typmodin, 0)::regprocedure::text),
        ('typmod_out', nullif(t.typmodout, 0)::regprocedure::text),
        ('analyze', nullif(t.typanalyze, 0)::regprocedure::text),
        ('subscript', nullif(t.typsubscript, 0)::regprocedure::text),
        ('length', CASE WHEN t.typtype = 'b' THEN t.typlen::text END),
        ('by value', CASE WHEN t.typtype = 'b' THEN t.typbyval::text END),
        ('alignment', CASE WHEN t.typtype IN ('b', 'd') THEN t.typalign::text END),
        ('storage', CASE WHEN t.typtype IN ('b', 'd') THEN t.typstorage::text END),
        ('category', t.typcategory::text),
        ('preferred', CASE WHEN t.typispreferred THEN 'true' END),
        ('delimiter', CASE WHEN t.typdelim <> ',' THEN t.typdelim::text END),
        ('element', nullif(t.typelem, 0)::regtype::text),
        ('array type', nullif(t.typarray, 0)::regtype::text),
        ('collatable', CASE WHEN t.typcollation <> 0 THEN 'true' END),
        ('base type', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END),
        ('not null', CASE WHEN t.typnotnull THEN 'true' END),
        ('default', coalesce(pg_get_expr(t.typdefaultbin, 0), t.typdefault)),
        ('collation', CASE WHEN t.typtype = 'd' AND t.typcollation <> 0
                           THEN (SELECT quote_ident(collname) FROM pg_collation
                                  WHERE oid = t.typcollation) END),
        ('relation', CASE WHEN t.typrelid <> 0 THEN t.typrelid::regclass::text END)
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    SELECT t.label, 'enum labels', string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
      FROM typ t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.label
    UNION ALL
    SELECT t.label, v.prop, v.val
      FROM typ t JOIN pg_range g ON g.rngtypid = t.oid
     CROSS JOIN LATERAL (VALUES
        ('subtype', format_type(g.rngsubtype, NULL)),
        ('multirange', g.rngmultitypid::regtype::text),
        ('subtype collation', (SELECT quote_ident(collname) FROM pg_collation
                                WHERE oid = g.rngcollation)),
        ('subtype opclass', (SELECT i.identity FROM pg_identify_object('pg_opclass'::regclass,
                                                                       g.rngsubopc, 0) i)),
        ('canonical', nullif(g.rngcanonical, 0)::regprocedure::text),
        ('subtype diff', nullif(g.rngsubdiff, 0)::regprocedure::text)
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    -- operators
    SELECT o.label, v.prop, v.val
      FROM obj o JOIN pg_operator p ON o.classid = 'pg_operator'::regclass AND p.oid = o.objid
     CROSS JOIN LATERAL (VALUES
        ('owner', pg_get_userbyid(p.oprowner)),
        ('kind', p.oprkind::text),
        ('result', format_type(p.oprresult, NULL)),
        ('function', nullif(p.oprcode, 0)::regprocedure::text),
        ('commutator', nullif(p.oprcom, 0)::regoperator::text),
        ('negator', nullif(p.oprnegate, 0)::regoperator::text),
        ('restrict', nullif(p.oprrest, 0)::regprocedure::text),
        ('join', nullif(p.oprjoin, 0)::regprocedure::text),
        ('merges', CASE WHEN p.oprcanmerge THEN 'true' END),
        ('hashes', CASE WHEN p.oprcanhash THEN 'true' END)
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    -- operator families: their operators and support functions, however they
    -- were added (CREATE OPERATOR CLASS or ALTER OPERATOR FAMILY)
    SELECT o.label, 'owner', pg_get_userbyid(f.opfowner)
      FROM obj o JOIN pg_opfamily f ON o.classid = 'pg_opfamily'::regclass AND f.oid = o.objid
    UNION ALL
    SELECT o.label, 'operator',
           a.amopstrategy || ' (' || format_type(a.amoplefttype, NULL) || ', '
           || format_type(a.amoprighttype, NULL) || ') ' || a.amopopr::regoperator::text
           || CASE a.amoppurpose WHEN 'o' THEN ' FOR ORDER BY '
                  || (SELECT i.identity FROM pg_identify_object('pg_opfamily'::regclass,
                                                                a.amopsortfamily, 0) i)
                  ELSE '' END
      FROM obj o JOIN pg_amop a ON o.classid = 'pg_opfamily'::regclass AND a.amopfamily = o.objid
    UNION ALL
    SELECT o.label, 'function',
           a.amprocnum || ' (' || format_type(a.amproclefttype, NULL) || ', '
           || format_type(a.amprocrighttype, NULL) || ') ' || a.amproc::regprocedure::text
      FROM obj o JOIN pg_amproc a ON o.classid = 'pg_opfamily'::regclass AND a.amprocfamily = o.objid
    UNION ALL
    -- operator classes
    SELECT o.label, v.prop, v.val
      FROM obj o JOIN pg_opclass c ON o.classid = 'pg_opclass'::regclass AND c.oid = o.objid
     CROSS JOIN LATERAL (VALUES
        ('owner', pg_get_userbyid(c.opcowner)),
        ('family', (SELECT i.identity FROM pg_identify_object('pg_opfamily'::regclass,
                                                              c.opcfamily, 0) i)),
        ('default', c.opcdefault::text),
        ('input type', format_type(c.opcintype, NULL)),
        ('storage type', nullif(c.opckeytype, 0)::regtype::text)
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    -- casts
    SELECT o.label, v.prop, v.val
      FROM obj o JOIN pg_cast c ON o.classid = 'pg_cast'::regclass AND c.oid = o.objid
     CROSS JOIN LATERAL (VALUES
        ('function', nullif(c.castfunc, 0)::regprocedure::text),
        ('context', CASE c.castcontext WHEN 'e' THEN 'explicit' WHEN 'a' THEN 'assignment'
                         ELSE 'implicit' END),
        ('method', CASE c.castmethod WHEN 'f' THEN 'function' WHEN 'i' THEN 'inout'
                        ELSE 'binary' END)
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    -- event triggers
    SELECT o.label, v.prop, v.val
      FROM obj o JOIN pg_event_trigger t ON o.classid = 'pg_event_trigger'::regclass
                                        AND t.oid = o.objid
     CROSS JOIN LATERAL (VALUES
        ('owner', pg_get_userbyid(t.evtowner)),
        ('event', t.evtevent::text),
        ('function', t.evtfoid::regprocedure::text),
        ('enabled', t.evtenabled::text),
        ('tags', (SELECT string_agg(x, ', ' ORDER BY x COLLATE "C") FROM unnest(t.evttags) x))
      ) v(prop, val)
     WHERE v.val IS NOT NULL
    UNION ALL
    -- other kinds of member objects: their definition where PostgreSQL
    -- offers one; otherwise only their name, membership and comment
    SELECT o.label, 'definition',
           CASE WHEN o.classid = 'pg_ts_config'::regclass THEN
                    (SELECT 'parser ' || (pg_identify_object('pg_ts_parser'::regclass, c.cfgparser, 0)).identity
                            || coalesce(E'\n' || (
                                 SELECT string_agg('token ' || m.maptokentype || ' '
                                                   || m.mapseqno || ' '
                                                   || m.mapdict::regdictionary::text, E'\n'
                                                   ORDER BY m.maptokentype, m.mapseqno)
                                   FROM pg_ts_config_map m WHERE m.mapcfg = o.objid), '')
                       FROM pg_ts_config c WHERE c.oid = o.objid)
                WHEN o.classid = 'pg_ts_dict'::regclass THEN
                    (SELECT 'template '
                            || (pg_identify_object('pg_ts_template'::regclass, d.dicttemplate, 0)).identity
                            || ', options '
                            || coalesce(d.dictinitoption, '')
                       FROM pg_ts_dict d WHERE d.oid = o.objid)
                WHEN o.classid = 'pg_collation'::regclass THEN
                    (SELECT c.collprovider::text || ' ' || coalesce(c.collcollate, '') || ' '
                            || coalesce(c.collctype, '') || ' ' || coalesce(c.colliculocale, '')
                            || CASE WHEN c.collisdeterministic THEN '' ELSE ' nondeterministic' END
                       FROM pg_collation c WHERE c.oid = o.objid)
                WHEN o.classid = 'pg_am'::regclass THEN
                    (SELECT CASE a.amtype WHEN 'i' THEN 'index' ELSE 'table' END
                            || ' access method, handler ' || a.amhandler::regprocedure::text
                       FROM pg_am a WHERE a.oid = o.objid)
                WHEN o.classid = 'pg_transform'::regclass THEN
                    (SELECT 'from sql ' || coalesce(nullif(t.trffromsql, 0)::regprocedure::text, '-')
                            || ', to sql ' || coalesce(nullif(t.trftosql, 0)::regprocedure::text, '-')
                       FROM pg_transform t WHERE t.oid = o.objid)
                WHEN o.classid = 'pg_ts_parser'::regclass THEN
                    (SELECT concat_ws(', ', p.prsstart::regproc, p.prstoken::regproc,
                                      p.prsend::regproc, p.prsheadline::regproc,
                                      p.prslextype::regproc)
                       FROM pg_ts_parser p WHERE p.oid = o.objid)
                WHEN o.classid = 'pg_ts_template'::regclass THEN
                    (SELECT concat_ws(', ', t.tmplinit::regproc, t.tmpllexize::regproc)
                       FROM pg_ts_template t WHERE t.oid = o.objid)
                WHEN o.classid = 'pg_foreign_data_wrapper'::regclass THEN
                    (SELECT 'handler ' || w.fdwhandler::regproc::text || ' validator '
                            || w.fdwvalidator::regproc::text || ' options '
                            || coalesce(array_to_string(w.fdwoptions, ', '), '')
                       FROM pg_foreign_data_wrapper w WHERE w.oid = o.objid)
           END
      FROM obj o
     WHERE o.classid IN ('pg_ts_config'::regclass, 'pg_ts_dict'::regclass,
                         'pg_ts_parser'::regclass, 'pg_ts_template'::regclass,
                         'pg_collation'::regclass, 'pg_foreign_data_wrapper'::regclass,
                         'pg_am'::regclass, 'pg_transform'::regclass)
),
lines AS (
    SELECT r.obj, r.prop, r.val, l.n,
           r.obj || ' | ' || r.prop || CASE WHEN r.val LIKE E'%\n%' THEN ':' || l.n ELSE '' END
           || ' | ' || l.line AS txt
      FROM raw r
     CROSS JOIN LATERAL regexp_split_to_table(r.val, E'\n') WITH ORDINALITY l(line, n)
     WHERE r.val IS NOT NULL
    UNION ALL
    SELECT 'extension ' || quote_ident(:'ext'), '', '', 0,
           'extension ' || quote_ident(:'ext') || ' | not installed'
     WHERE NOT EXISTS (SELECT FROM pg_extension WHERE extname = :'ext'))
SELECT txt FROM lines
 ORDER BY obj COLLATE "C", prop COLLATE "C", val COLLATE "C", n;

ROLLBACK;
