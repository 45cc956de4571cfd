-- wrk script: POST a small chat completion to the mock provider.
-- The model (and so the mock's directives) comes from MOCK_MODEL, default
-- "mock-model"; for example MOCK_MODEL="mock-model;delay:200".
--   wrk -t2 -c64 -d5s -s test/bench/mock_post.lua http://127.0.0.1:PORT/v1/chat/completions
-- wrk itself reports "Non-2xx or 3xx responses" when any answer failed.
local model = os.getenv("MOCK_MODEL") or "mock-model"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"hello"}]}'
