-- Priced as billed: a usage row is priced by the tokens it carries, whatever
-- its status.  A content-filter stop with usage is an error (LG451) whose
-- row has the tokens and a cost; an answer without usage is 'ok' with cost
-- NULL and unpriced; an error without tokens costs NULL and is not unpriced.
\getenv mock_url LLMGW_MOCK_URL
SELECT regexp_replace(:'mock_url', '/v1$', '') AS mock_root \gset
SELECT llmgw.create_provider('pb-anthropic', 'anthropic', :'mock_root' || '/v1',
                             secret => 'env:LLMGW_TEST_KEY');
SELECT llmgw.create_provider('pb-gemini', 'gemini', :'mock_root' || '/v1beta',
                             secret => 'env:LLMGW_TEST_KEY');
-- 1 per million input tokens, 2 per million output tokens
SELECT llmgw.set_price('pb-price', input => 1, output => 2) > 0 AS priced;

-- pb_chat(alias, stream): llm_chat of "one two three", its outcome as try() shows it
CREATE FUNCTION pb_chat(alias text, stream boolean) RETURNS text LANGUAGE sql AS $$
    SELECT try(format('SELECT llm_chat(%L)', jsonb_build_object('model', alias, 'stream', stream,
               'messages', '[{"role": "user", "content": "one two three"}]'::jsonb)))
$$;
-- pb_usage(alias): its usage rows, oldest first
CREATE FUNCTION pb_usage(alias text)
RETURNS TABLE (attempt int, status text, error_class text, http_status int,
               input_tokens bigint, output_tokens bigint, usage_source text, cost numeric,
               unpriced boolean)
LANGUAGE sql AS $$
    SELECT attempt, status, error_class, http_status, input_tokens, output_tokens,
           usage_source, cost, unpriced
      FROM llmgw.usage WHERE model = alias ORDER BY id
$$;

DO $$
BEGIN
    PERFORM llmgw.create_model('pb-' || f || '-' || d, p, 'pb-' || f || ';' || d,
                               price_model => 'pb-price')
       FROM (VALUES ('openai', 'mock'), ('anthropic', 'pb-anthropic'), ('gemini', 'pb-gemini')) v(f, p),
            unnest(ARRAY['filtered', 'nousage', 'status:500']) d;
END
$$;
SELECT llmgw.create_budget('pb filtered', 'model', 'pb-openai-filtered', 'total', 100, 'soft') > 0
       AS budget;

-- a content-filter stop (OpenAI finish_reason content_filter, Anthropic
-- stop_reason refusal, Gemini SAFETY) with usage: LG451, not streamed, then streamed
SELECT m, s AS streamed, pb_chat(m, s)
  FROM unnest(ARRAY['pb-openai-filtered', 'pb-anthropic-filtered', 'pb-gemini-filtered']) m,
       unnest(ARRAY[false, true]) s;
-- its rows keep the tokens and are priced (6 input at 1, 6 output at 2 per million)
SELECT m, u.* FROM unnest(ARRAY['pb-openai-filtered', 'pb-anthropic-filtered',
                                'pb-gemini-filtered']) m, pb_usage(m) u;
-- and what they cost is spent: in the rollups and in the budget
SELECT model, calls, errors, unpriced, input_tokens, output_tokens, cost
  FROM llmgw.spend_by_model WHERE model = 'pb-openai-filtered';
SELECT name, spent, ledger_spent FROM llmgw.budget_status WHERE name = 'pb filtered';

-- an answer without usage: ok, cost NULL and unpriced
SELECT m, s AS streamed, pb_chat(m, s)
  FROM unnest(ARRAY['pb-openai-nousage', 'pb-anthropic-nousage', 'pb-gemini-nousage']) m,
       unnest(ARRAY[false, true]) s;
SELECT m, u.* FROM unnest(ARRAY['pb-openai-nousage', 'pb-anthropic-nousage',
                                'pb-gemini-nousage']) m, pb_usage(m) u;

-- an error without tokens: cost NULL, and not unpriced (nothing to price)
SELECT m, pb_chat(m, false)
  FROM unnest(ARRAY['pb-openai-status:500', 'pb-anthropic-status:500', 'pb-gemini-status:500']) m;
SELECT m, u.* FROM unnest(ARRAY['pb-openai-status:500', 'pb-anthropic-status:500',
                                'pb-gemini-status:500']) m, pb_usage(m) u;

DELETE FROM llmgw.budgets WHERE name = 'pb filtered';
DO $$
BEGIN
    PERFORM llmgw.drop_model(alias) FROM llmgw.models WHERE alias LIKE 'pb-%';
END
$$;
SELECT llmgw.drop_provider('pb-anthropic'), llmgw.drop_provider('pb-gemini');
DROP FUNCTION pb_chat(text, boolean), pb_usage(text);
