-- statement_timeout aborts the HTTP transfer: the caller gets 57014 and the
-- usage row says the call was cancelled.
SELECT llmgw.create_model('slow', 'mock', 'mock-model;delay:10000');
SET statement_timeout = '200ms';
SELECT llm_complete('x', 'slow');
RESET statement_timeout;
SELECT status, error_class, http_status FROM last_usage();

-- the session and the workers are fine afterwards
SELECT llm_complete('after cancel', 'demo');
