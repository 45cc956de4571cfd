-- Every failure is a clear error with its own SQLSTATE, and a usage row
-- whenever a provider was reached.
\getenv mock_url LLMGW_MOCK_URL
\getenv key_file LLMGW_KEY_FILE

-- unknown model: 42704, no provider reached, no row
SELECT count(*) AS before FROM llmgw.usage \gset
SELECT try($$SELECT llm_complete('x', 'no-such-model')$$);
SELECT count(*) = :before AS no_row FROM llmgw.usage;

-- upstream HTTP errors, each with its class
SELECT llmgw.create_model('e400', 'mock', 'mock-model;status:400');
SELECT llmgw.create_model('e404', 'mock', 'gpt-missing;status:404');
SELECT llmgw.create_model('e429', 'mock', 'mock-model;status:429');
SELECT llmgw.create_model('e500', 'mock', 'mock-model;status:500');
SELECT llmgw.create_model('e503', 'mock', 'mock-model;status:503');
SELECT llmgw.create_model('quota', 'mock', 'mock-model;quota');
SELECT llmgw.create_model('context', 'mock', 'mock-model;context');
SELECT try($$SELECT llm_complete('x', 'e400')$$);
SELECT try($$SELECT llm_complete('x', 'e404')$$);
SELECT try($$SELECT llm_complete('x', 'e429')$$);
SELECT try($$SELECT llm_complete('x', 'e500')$$);
SELECT try($$SELECT llm_complete('x', 'e503')$$);
SELECT try($$SELECT llm_complete('x', 'quota')$$);
SELECT try($$SELECT llm_complete('x', 'context')$$);
SELECT * FROM last_usage(7);

-- a 200 whose body is not JSON
SELECT llmgw.create_model('broken', 'mock', 'mock-model;malformed');
SELECT try($$SELECT llm_complete('x', 'broken')$$);
SELECT status, error_class, http_status FROM last_usage();

-- a response larger than llmgw.max_response_size
SELECT llmgw.create_model('huge', 'mock', 'mock-model;huge:200000');
SET llmgw.max_response_size = '64kB';
SELECT try($$SELECT llm_complete('x', 'huge')$$);
SELECT status, error_class, http_status FROM last_usage();
RESET llmgw.max_response_size;
SELECT length(llm_complete('x', 'huge')) AS huge_allowed_by_default;

-- a provider that never answers: the provider's or the call's timeout
SELECT llmgw.create_model('stall', 'mock', 'mock-model;stall');
SET llmgw.request_timeout = '300ms';
SELECT try($$SELECT llm_complete('x', 'stall')$$);
SELECT status, error_class, http_status FROM last_usage();
RESET llmgw.request_timeout;

-- a provider that cannot be reached
SELECT llmgw.create_provider('down', 'openai_compatible', 'http://127.0.0.1:1/v1');
SELECT llmgw.create_model('down', 'down', 'any');
SELECT try($$SELECT llm_complete('x', 'down')$$);
SELECT status, error_class, http_status FROM last_usage();

-- secrets: a file reference, a stored secret, and references that fail
SELECT llmgw.create_provider('viafile', 'openai_compatible', :'mock_url',
                             secret => 'file:' || :'key_file');
SELECT llmgw.create_model('viafile', 'viafile', 'mock-model');
SELECT llm_complete('by file', 'viafile');
SELECT llmgw.create_provider('wrongkey', 'openai_compatible', :'mock_url',
                             secret => 'sk-wrong-key-1234');
SELECT llmgw.create_model('wrongkey', 'wrongkey', 'mock-model');
SELECT try($$SELECT llm_complete('x', 'wrongkey')$$);
SELECT llmgw.create_provider('noenv', 'openai_compatible', :'mock_url',
                             secret => 'env:LLMGW_NOT_SET');
SELECT llmgw.create_model('noenv', 'noenv', 'mock-model');
SELECT try($$SELECT llm_complete('x', 'noenv')$$);
SELECT llmgw.create_provider('nofile', 'openai_compatible', :'mock_url',
                             secret => 'file:/nonexistent/key');
SELECT llmgw.create_model('nofile', 'nofile', 'mock-model');
SELECT try($$SELECT llm_complete('x', 'nofile')$$);

-- the stored secret is in no view a login role can read; providers shows a reference
SELECT name, regexp_replace(secret_ref, '^file:.*/', 'file:.../') AS secret_ref
  FROM llmgw.providers ORDER BY name;
SELECT has_table_privilege('llmgw_admin', 'llmgw.provider_secrets', 'SELECT') AS admin_reads_secrets;

-- a configuration change is seen by the workers at once
SELECT llmgw.drop_model('wrongkey');
SELECT try($$SELECT llm_complete('x', 'wrongkey')$$);

-- bad configuration is refused
SELECT try($$SELECT llmgw.create_provider('bad kind', 'openai', 'http://x')$$);
SELECT try($$SELECT llmgw.create_provider('p', 'nosuch', 'http://x')$$);
SELECT try($$SELECT llmgw.create_provider('p', 'openai', 'file:///etc/passwd')$$);
SELECT try($$SELECT llmgw.create_provider('p', 'openai', 'https://user:pw@host/v1')$$);
SELECT try($$SELECT llmgw.create_provider('p', 'openai', 'https://api/v1', 'env:BAD-NAME')$$);
SELECT try($$SELECT llmgw.create_model('m', 'no-such-provider', 'x')$$);
SELECT try($$SELECT llmgw.drop_model('no-such-model')$$);
