-- Every object of the extension says what it is for (COMMENT ON): its
-- members, the triggers and row-level security policies of its tables, and
-- every column of its tables and views (not of the partitions of
-- llmgw.usage: a partition does not take its parent's column comments).
SELECT pg_describe_object(d.classid, d.objid, 0) AS without_comment
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'llmgw')
   AND d.deptype = 'e'
   AND obj_description(d.objid, d.classid::regclass::text) IS NULL
UNION ALL
SELECT pg_describe_object('pg_trigger'::regclass, t.oid, 0)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'llmgw'::regnamespace AND NOT t.tgisinternal AND t.tgparentid = 0
   AND obj_description(t.oid, 'pg_trigger') IS NULL
UNION ALL
SELECT pg_describe_object('pg_policy'::regclass, p.oid, 0)
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
 WHERE c.relnamespace = 'llmgw'::regnamespace
   AND obj_description(p.oid, 'pg_policy') IS NULL
UNION ALL
SELECT pg_describe_object('pg_class'::regclass, c.oid, a.attnum)
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
 WHERE c.relnamespace = 'llmgw'::regnamespace AND c.relkind IN ('r', 'p', 'v')
   AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
   AND col_description(c.oid, a.attnum) IS NULL
ORDER BY 1;

-- The schema version the library serves is the installed one
SELECT extversion FROM pg_extension WHERE extname = 'llmgw';
