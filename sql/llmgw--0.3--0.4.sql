/* llmgw--0.3--0.4.sql: provider batches grown up (docs/batch.md), the last of "see it" (docs/metrics.md) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.4'" to load this file. \quit

-- A fresh install of 0.4 is llmgw--0.3.sql followed by this file (there is no
-- llmgw--0.4.sql): CREATE EXTENSION takes that path by itself, so the fresh
-- schema and the updated one are made by the same statements.

-- ==== Batches at Anthropic, Gemini and Azure (docs/batch.md) ====
-- Each provider's Batch API has its own limits (OpenAI and Azure 50,000
-- requests and 200 MB, Anthropic 100,000 requests or 256 MB, Gemini's
-- inline requests 20 MB).  Worker 0 learns which provider a batch goes to
-- when it builds it: a batch beyond that provider's limits is split then,
-- before anything is sent, by moving its last items to a new batch of the
-- same job.

-- Internal (worker 0): move the items named (still pending, of a batch
-- not sent yet) to a new batch of the same job, owner and model; returns
-- the new batch's id (NULL when the batch was already sent)
CREATE FUNCTION llmgw.batch_split(batch bigint, moved text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bt llmgw.batches;
    nb bigint;
    n integer;
BEGIN
    SELECT * INTO bt FROM llmgw.batches b WHERE b.id = batch FOR UPDATE;
    IF NOT FOUND OR bt.state <> 'queued' OR cardinality(moved) IS NULL
       OR cardinality(moved) >= bt.requests THEN
        RETURN NULL;
    END IF;
    INSERT INTO llmgw.batches (job_id, owner, model, requests, cancel_requested)
    VALUES (bt.job_id, bt.owner, bt.model, cardinality(moved), bt.cancel_requested)
    RETURNING id INTO nb;
    UPDATE llmgw.batch_items i SET batch_id = nb
     WHERE i.batch_id = batch AND i.custom_id = ANY (moved) AND i.state = 'pending';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        DELETE FROM llmgw.batches b WHERE b.id = nb;
        RETURN NULL;
    END IF;
    UPDATE llmgw.batches b SET requests = b.requests - n WHERE b.id = batch;
    UPDATE llmgw.batches b SET requests = n WHERE b.id = nb;
    RETURN nb;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.batch_split(bigint, text[]) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.batch_split(bigint, text[]) IS 'Internal (worker 0): move items of a batch not sent yet to a new batch of the same job (a provider''s limits)';
COMMENT ON COLUMN llmgw.batches.state IS 'queued, submitting (file uploaded; Anthropic, Gemini: the create may have been sent), validating, in_progress, finalizing, cancelling, ingesting (results being written), then completed, failed, expired or cancelled';
COMMENT ON COLUMN llmgw.batches.provider_status IS 'The status the provider last reported, in OpenAI''s words (validating, in_progress, finalizing, cancelling, completed, expired, cancelled, failed)';
COMMENT ON COLUMN llmgw.batches.output_file_id IS 'The provider''s id of the results file (Anthropic, Gemini: the batch whose results are fetched)';
COMMENT ON COLUMN llmgw.batch_items.answer IS 'The provider''s chat.completion, normalised to OpenAI''s for other providers (batches without a job only)';
