-- The privilege matrix of docs/security.md, checked against the catalogs:
-- every cell both ways (what is granted is granted, what is not is not),
-- every row names an object of the extension, and every object of the
-- extension has a row.  A role stands for each column; the superuser column
-- is the test's own superuser.
CREATE ROLE regress_m_admin LOGIN IN ROLE llmgw_admin;
CREATE ROLE regress_m_finance LOGIN IN ROLE llmgw_finance;
CREATE ROLE regress_m_user LOGIN IN ROLE llmgw_user;
CREATE ROLE regress_m_none LOGIN;
SELECT rolsuper AS test_role_is_superuser FROM pg_roles WHERE rolname = current_user;

-- pg_regress runs psql in the tree's root
\set doc `cat docs/security.md`
CREATE TEMP TABLE doc AS SELECT :'doc'::text AS body;

CREATE TEMP TABLE matrix_mismatch (n serial, object text, who text, what text);
CREATE TEMP TABLE matrix_count (rows_read int, objects int, members int, checks int);

DO $check$
DECLARE
    body text := (SELECT d.body FROM doc d);
    part text;
    line text;
    cells text[];
    header text[];
    -- the role standing for each column of the matrix
    columns text[] := ARRAY['llmgw_admin', 'llmgw_finance', 'llmgw_user', 'none', 'superuser'];
    stand_in text[] := ARRAY['regress_m_admin', 'regress_m_finance', 'regress_m_user',
                             'regress_m_none', current_user::text];
    obj text;
    kind text;
    objname text;
    cls regclass;
    oid_ oid;
    relkind_ "char";
    cell text;
    who text;
    priv text;
    letter text;
    expect text;            -- 'all', 'some' (columns only), 'none'
    granted boolean;
    some_cols boolean;
    seen text[] := '{}';
    nrows int := 0;
    nchecks int := 0;
    nmembers int := 0;
    r record;
BEGIN
    CREATE TEMP TABLE matrix_object (classid regclass, objid oid, object text);

    part := substring(body FROM '<!-- matrix:begin -->(.*)<!-- matrix:end -->');
    IF part IS NULL THEN
        INSERT INTO matrix_mismatch (object, who, what)
        VALUES ('docs/security.md', '', 'no <!-- matrix:begin --> ... <!-- matrix:end --> table');
        RETURN;
    END IF;

    FOR line IN SELECT l FROM regexp_split_to_table(part, E'\n') WITH ORDINALITY AS t(l, i)
                 WHERE btrim(l) LIKE '|%' ORDER BY i
    LOOP
        cells := string_to_array(btrim(line), '|');
        cells := ARRAY(SELECT btrim(c) FROM unnest(cells[2:cardinality(cells) - 1]) c);
        IF header IS NULL THEN
            header := cells;
            IF header IS DISTINCT FROM ('{object}'::text[] || columns) THEN
                INSERT INTO matrix_mismatch (object, who, what)
                VALUES ('header', '', format('columns are %s, expected %s',
                                             header, '{object}'::text[] || columns));
                RETURN;
            END IF;
            CONTINUE;
        END IF;
        CONTINUE WHEN cells[1] ~ '^:?-{3,}:?$';      -- the separator line
        nrows := nrows + 1;
        obj := cells[1];
        IF cardinality(cells) <> 6 THEN
            INSERT INTO matrix_mismatch (object, who, what)
            VALUES (obj, '', format('%s cells, expected 6', cardinality(cells)));
            CONTINUE;
        END IF;
        IF obj = ANY (seen) THEN
            INSERT INTO matrix_mismatch (object, who, what) VALUES (obj, '', 'listed twice');
            CONTINUE;
        END IF;
        seen := seen || obj;
        kind := split_part(obj, ' ', 1);
        objname := substr(obj, length(kind) + 2);

        -- the object the row names
        oid_ := NULL;
        IF kind = 'schema' THEN
            cls := 'pg_namespace';
            oid_ := to_regnamespace(objname);
        ELSIF kind IN ('table', 'view', 'sequence') THEN
            cls := 'pg_class';
            oid_ := to_regclass(objname);
            SELECT c.relkind INTO relkind_ FROM pg_class c WHERE c.oid = oid_;
            IF oid_ IS NOT NULL AND relkind_ <> ALL (CASE kind WHEN 'table' THEN '{r,p}'::"char"[]
                                                              WHEN 'view' THEN '{v}'
                                                              ELSE '{S}' END) THEN
                INSERT INTO matrix_mismatch (object, who, what)
                VALUES (obj, '', format('is not a %s (relkind %s)', kind, relkind_));
                CONTINUE;
            END IF;
        ELSIF kind IN ('function', 'procedure') THEN
            cls := 'pg_proc';
            oid_ := to_regprocedure(objname);
            IF oid_ IS NOT NULL AND (SELECT p.prokind FROM pg_proc p WHERE p.oid = oid_)
                                    <> (CASE kind WHEN 'function' THEN 'f' ELSE 'p' END) THEN
                INSERT INTO matrix_mismatch (object, who, what)
                VALUES (obj, '', format('is not a %s', kind));
                CONTINUE;
            END IF;
        ELSE
            INSERT INTO matrix_mismatch (object, who, what)
            VALUES (obj, '', format('unknown kind of object "%s"', kind));
            CONTINUE;
        END IF;
        IF oid_ IS NULL THEN
            INSERT INTO matrix_mismatch (object, who, what) VALUES (obj, '', 'no such object');
            CONTINUE;
        END IF;
        INSERT INTO matrix_object VALUES (cls, oid_, obj);

        -- every cell of the row
        FOR i IN 1 .. cardinality(columns) LOOP
            cell := cells[i + 1];
            who := stand_in[i];
            IF columns[i] = 'superuser' AND cell <> 'ALL' THEN
                INSERT INTO matrix_mismatch (object, who, what)
                VALUES (obj, columns[i], format('cell "%s": a superuser may do everything (ALL)', cell));
            END IF;
            IF cell = 'ALL' AND columns[i] <> 'superuser' THEN
                INSERT INTO matrix_mismatch (object, who, what)
                VALUES (obj, columns[i], 'cell "ALL" outside the superuser column');
            END IF;

            IF kind = 'schema' THEN
                IF cell !~ '^(USAGE|-|ALL)$' THEN
                    INSERT INTO matrix_mismatch (object, who, what)
                    VALUES (obj, columns[i], format('cannot read cell "%s"', cell));
                    CONTINUE;
                END IF;
                FOREACH priv IN ARRAY ARRAY['USAGE', 'CREATE'] LOOP
                    granted := has_schema_privilege(who, oid_, priv);
                    nchecks := nchecks + 1;
                    IF granted <> (cell = 'ALL' OR (cell = 'USAGE' AND priv = 'USAGE')) THEN
                        INSERT INTO matrix_mismatch (object, who, what)
                        VALUES (obj, columns[i], format('%s %s, the matrix says "%s"', priv,
                                CASE WHEN granted THEN 'granted' ELSE 'not granted' END, cell));
                    END IF;
                END LOOP;

            ELSIF kind IN ('table', 'view') THEN
                IF cell !~ '^(-|ALL|[SIUDsiud]+)$' THEN
                    INSERT INTO matrix_mismatch (object, who, what)
                    VALUES (obj, columns[i], format('cannot read cell "%s"', cell));
                    CONTINUE;
                END IF;
                -- S I U D as the matrix has them; TRUNCATE, REFERENCES and
                -- TRIGGER have no letter: nobody but a superuser holds them
                FOREACH priv IN ARRAY ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                            'REFERENCES', 'TRIGGER'] LOOP
                    letter := CASE priv WHEN 'SELECT' THEN 'S' WHEN 'INSERT' THEN 'I'
                                        WHEN 'UPDATE' THEN 'U' WHEN 'DELETE' THEN 'D' END;
                    expect := CASE WHEN cell = 'ALL' THEN 'all'
                                   WHEN letter IS NULL THEN 'none'
                                   WHEN strpos(cell, letter) > 0 THEN 'all'
                                   WHEN strpos(cell, lower(letter)) > 0 THEN 'some'
                                   ELSE 'none' END;
                    granted := has_table_privilege(who, oid_, priv);
                    nchecks := nchecks + 1;
                    IF granted <> (expect = 'all') THEN
                        INSERT INTO matrix_mismatch (object, who, what)
                        VALUES (obj, columns[i], format('%s on the whole %s %s, the matrix says "%s"',
                                priv, kind, CASE WHEN granted THEN 'granted' ELSE 'not granted' END, cell));
                    END IF;
                    IF priv IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES') THEN
                        some_cols := has_any_column_privilege(who, oid_, priv);
                        nchecks := nchecks + 1;
                        IF some_cols <> (expect IN ('all', 'some')) THEN
                            INSERT INTO matrix_mismatch (object, who, what)
                            VALUES (obj, columns[i], format('%s on columns %s, the matrix says "%s"',
                                    priv, CASE WHEN some_cols THEN 'granted' ELSE 'not granted' END, cell));
                        END IF;
                    ELSIF expect = 'some' THEN
                        INSERT INTO matrix_mismatch (object, who, what)
                        VALUES (obj, columns[i], format('%s cannot be granted on columns', priv));
                    END IF;
                END LOOP;
                -- what the role may read it can read (a view may call a
                -- function the role cannot)
                IF strpos(cell, 'S') > 0 AND columns[i] <> 'superuser' THEN
                    nchecks := nchecks + 1;
                    BEGIN
                        EXECUTE format('SET ROLE %I', who);
                        EXECUTE format('SELECT 1 FROM %s LIMIT 1', oid_::regclass);
                        RESET ROLE;
                    EXCEPTION WHEN OTHERS THEN
                        INSERT INTO matrix_mismatch (object, who, what)
                        VALUES (obj, columns[i], format('SELECT granted, but reading it fails: %s: %s',
                                                        SQLSTATE, SQLERRM));
                    END;
                END IF;

            ELSIF kind = 'sequence' THEN
                IF cell !~ '^(-|ALL)$' THEN
                    INSERT INTO matrix_mismatch (object, who, what)
                    VALUES (obj, columns[i], format('cannot read cell "%s"', cell));
                    CONTINUE;
                END IF;
                FOREACH priv IN ARRAY ARRAY['USAGE', 'SELECT', 'UPDATE'] LOOP
                    granted := has_sequence_privilege(who, oid_, priv);
                    nchecks := nchecks + 1;
                    IF granted <> (cell = 'ALL') THEN
                        INSERT INTO matrix_mismatch (object, who, what)
                        VALUES (obj, columns[i], format('%s %s, the matrix says "%s"', priv,
                                CASE WHEN granted THEN 'granted' ELSE 'not granted' END, cell));
                    END IF;
                END LOOP;

            ELSE    -- function, procedure
                IF cell !~ '^(X|-|ALL)$' THEN
                    INSERT INTO matrix_mismatch (object, who, what)
                    VALUES (obj, columns[i], format('cannot read cell "%s"', cell));
                    CONTINUE;
                END IF;
                granted := has_function_privilege(who, oid_, 'EXECUTE');
                nchecks := nchecks + 1;
                IF granted <> (cell IN ('X', 'ALL')) THEN
                    INSERT INTO matrix_mismatch (object, who, what)
                    VALUES (obj, columns[i], format('EXECUTE %s, the matrix says "%s"',
                            CASE WHEN granted THEN 'granted' ELSE 'not granted' END, cell));
                END IF;
            END IF;
        END LOOP;
    END LOOP;

    -- every object of the extension has a row, and every row is one of them
    FOR r IN SELECT d.classid::regclass AS classid, d.objid,
                    pg_describe_object(d.classid, d.objid, 0) AS descr
               FROM pg_depend d
              WHERE d.refclassid = 'pg_extension'::regclass
                AND d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'llmgw')
                AND d.deptype = 'e'
              ORDER BY 3
    LOOP
        nmembers := nmembers + 1;
        nchecks := nchecks + 1;
        IF NOT EXISTS (SELECT 1 FROM matrix_object m
                        WHERE m.classid = r.classid AND m.objid = r.objid) THEN
            INSERT INTO matrix_mismatch (object, who, what)
            VALUES (r.descr, '', 'an object of the extension that the matrix does not list');
        END IF;
    END LOOP;
    FOR r IN SELECT m.object FROM matrix_object m
              WHERE NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = m.classid AND d.objid = m.objid
                                   AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                                   AND d.refobjid = (SELECT e.oid FROM pg_extension e
                                                      WHERE e.extname = 'llmgw'))
              ORDER BY 1
    LOOP
        nchecks := nchecks + 1;
        INSERT INTO matrix_mismatch (object, who, what)
        VALUES (r.object, '', 'listed, but not an object of the extension');
    END LOOP;

    -- no grant to a role the matrix does not know (its owner aside)
    FOR r IN SELECT m.object, a.grantee, a.privilege_type
               FROM matrix_object m
               CROSS JOIN LATERAL (
                   SELECT c.relacl AS acl, c.relowner AS owner FROM pg_class c
                    WHERE m.classid = 'pg_class'::regclass AND c.oid = m.objid
                   UNION ALL
                   SELECT p.proacl, p.proowner FROM pg_proc p
                    WHERE m.classid = 'pg_proc'::regclass AND p.oid = m.objid
                   UNION ALL
                   SELECT n.nspacl, n.nspowner FROM pg_namespace n
                    WHERE m.classid = 'pg_namespace'::regclass AND n.oid = m.objid) o
               CROSS JOIN LATERAL aclexplode(o.acl) a
              WHERE a.grantee <> o.owner
                AND a.grantee NOT IN (SELECT g.oid FROM pg_roles g
                                       WHERE g.rolname IN ('llmgw_admin', 'llmgw_finance', 'llmgw_user'))
              ORDER BY 1, 2, 3
    LOOP
        INSERT INTO matrix_mismatch (object, who, what)
        VALUES (r.object, CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END,
                format('%s granted to a role outside the matrix', r.privilege_type));
    END LOOP;
    nchecks := nchecks + (SELECT count(*) FROM matrix_object);

    INSERT INTO matrix_count VALUES (nrows, (SELECT count(*) FROM matrix_object), nmembers, nchecks);
END
$check$;

-- Every difference between the matrix and the grants (none)
SELECT object, who, what FROM matrix_mismatch ORDER BY n;
-- Rows read, objects named, objects of the extension, checks made: an
-- object added to the extension must be added to the matrix
SELECT * FROM matrix_count;

DROP ROLE regress_m_admin, regress_m_finance, regress_m_user, regress_m_none;
