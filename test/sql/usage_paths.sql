-- How a worker writes usage rows (src/usage.c): straight into llmgw.usage,
-- each priced by the library's llmgw.cost at the price row the worker's
-- configuration holds, with the rollups the trigger would add; the INSERT
-- statement (priced in SQL, the trigger firing) when a price has changed
-- since the configuration was loaded or someone put a trigger on
-- llmgw.usage.  Every path must leave the same rows, costs and rollups.
SELECT llmgw.set_price('up-price', input => 1.5, output => 4.25, cached_input => 0.15,
                       per_request => 0.0001) > 0 AS priced;
SELECT llmgw.create_model('up-direct', 'mock', 'up-model', price_model => 'up-price');

-- up_call(prompt): llm_complete through the model
CREATE FUNCTION up_call(prompt text) RETURNS text LANGUAGE sql
AS $$ SELECT llm_complete(prompt, model => 'up-direct') $$;

-- the direct path: three calls
SELECT up_call('one two three') IS NOT NULL AS answered FROM generate_series(1, 3);

-- a price that starts in two seconds: the configuration loaded now holds the
-- old one until then; a call after it has its price looked up in SQL
SELECT llmgw.set_price('up-price', input => 3, output => 8.5, valid_from => now() + interval '2 seconds') > 0
       AS new_price;
SELECT pg_sleep(2.2);
SELECT up_call('four five') IS NOT NULL AS answered;

-- a trigger on llmgw.usage: the worker's rows go through the INSERT, which fires it
CREATE TABLE public.usage_seen (request_id uuid, model text);
GRANT INSERT ON public.usage_seen TO PUBLIC;
CREATE FUNCTION public.usage_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.usage_seen VALUES (NEW.request_id, NEW.model);
    RETURN NULL;
END
$$;
CREATE TRIGGER usage_seen AFTER INSERT ON llmgw.usage FOR EACH ROW
    EXECUTE FUNCTION public.usage_seen();
SELECT up_call('six seven eight nine') IS NOT NULL AS answered;
SELECT count(*) AS seen_by_the_trigger FROM public.usage_seen WHERE model = 'up-direct';
DROP TRIGGER usage_seen ON llmgw.usage;
-- and without it, straight again
SELECT up_call('ten') IS NOT NULL AS answered;
SELECT count(*) AS seen_by_the_trigger FROM public.usage_seen WHERE model = 'up-direct';

-- a constraint someone added to llmgw.usage that a row breaks: the worker
-- writing it straight gets the constraint's error (no crash), the round is
-- written again call by call, and that call fails with LG007
ALTER TABLE llmgw.usage ADD CONSTRAINT up_no_boom CHECK (model IS DISTINCT FROM 'up-boom');
SELECT llmgw.create_model('up-boom', 'mock', 'up-model', price_model => 'up-price');
SELECT split_part(r, E'\n', 1) AS error,
       r LIKE '%new row for relation "usage_%" violates check constraint "up_no_boom"%' AS detail
  FROM try($$SELECT llm_complete('boom', model => 'up-boom')$$) r;
SELECT try($$SELECT llm_complete('fine', model => 'up-direct')$$) AS other_models_still_written;
ALTER TABLE llmgw.usage DROP CONSTRAINT up_no_boom;
-- the worker checks the rows it writes against the constraints the table
-- has now (it keeps them prepared until the table changes): dropped, the
-- same call is written
SELECT llm_complete('boom', model => 'up-boom') IS NOT NULL AS written_once_dropped;
SELECT llmgw.drop_model('up-boom');
SELECT count(*) FILTER (WHERE status = 'ok') AS boom_rows_ok, count(*) AS boom_rows
  FROM llmgw.usage WHERE model = 'up-boom';

-- a stored generated column someone added to the days' rollups that depends
-- on a sum: the worker's update in place computes it, as an UPDATE would (it
-- skips only those that depend on no sum, as month, of the day, does); then
-- dropped, the worker works with the table as it is again
ALTER TABLE llmgw.usage_daily ADD COLUMN up_calls_twice bigint GENERATED ALWAYS AS (calls * 2) STORED;
SELECT up_call('eleven') IS NOT NULL AS answered;
SELECT up_call('twelve') IS NOT NULL AS answered;
SELECT count(*) > 0 AS rows_of_the_day, bool_and(up_calls_twice = calls * 2) AS generated_computed
  FROM llmgw.usage_daily WHERE model = 'up-direct';
ALTER TABLE llmgw.usage_daily DROP COLUMN up_calls_twice;
SELECT up_call('thirteen') IS NOT NULL AS answered;

-- every row priced by its own price row, as llmgw.cost says, in the price's currency
SELECT u.input_tokens, u.output_tokens, p.input AS input_rate, u.cost, u.currency, u.unpriced,
       u.cost = llmgw.cost(p, u.input_tokens, u.output_tokens, u.cached_input_tokens,
                           u.cache_write_tokens, u.cache_write_1h_tokens, u.reasoning_tokens)
       AS cost_is_the_rule
  FROM llmgw.usage u JOIN llmgw.prices p ON p.id = u.price_id
 WHERE u.model = 'up-direct' ORDER BY u.id;
-- the rollups hold exactly what the rows hold, whichever path wrote them
SELECT (SELECT count(*) FROM llmgw.usage WHERE model = 'up-direct') AS rows,
       (SELECT sum(calls) FROM llmgw.usage_daily WHERE model = 'up-direct') AS daily_calls,
       (SELECT sum(calls) FROM llmgw.usage_totals WHERE model = 'up-direct') AS total_calls,
       (SELECT sum(cost) FROM llmgw.usage WHERE model = 'up-direct') AS cost,
       (SELECT sum(cost) FROM llmgw.usage_daily WHERE model = 'up-direct') AS daily_cost,
       (SELECT sum(cost) FROM llmgw.usage_totals WHERE model = 'up-direct') AS total_cost,
       (SELECT sum(input_tokens) FROM llmgw.usage WHERE model = 'up-direct')
         = (SELECT sum(input_tokens) FROM llmgw.usage_daily WHERE model = 'up-direct') AS input_equal,
       (SELECT sum(output_tokens) FROM llmgw.usage WHERE model = 'up-direct')
         = (SELECT sum(output_tokens) FROM llmgw.usage_totals WHERE model = 'up-direct') AS output_equal;
-- one rollup row per day and worker (shard), not one per path
SELECT count(*) = count(DISTINCT shard) AS one_daily_row_per_shard
  FROM llmgw.usage_daily WHERE model = 'up-direct';
SELECT count(*) = count(DISTINCT shard) AS one_total_row_per_shard
  FROM llmgw.usage_totals WHERE model = 'up-direct';

DROP FUNCTION public.usage_seen() CASCADE;
DROP TABLE public.usage_seen;
DROP FUNCTION up_call(text);
SELECT llmgw.drop_model('up-direct');
